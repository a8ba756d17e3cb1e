//! One simulated user driving a hub exactly like a browser would: its own cookie jar, every
//! redirect followed by hand so each hop is observed (and a 429 on any hop is honoured), the
//! spawn progress event stream, the single-user server's OAuth dance, a kernel over a WebSocket,
//! idling, and stopping the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};
use url::Url;

use crate::report::{Failure, Phase, UserOutcome};
use crate::scenario::{Password, Scenario};

/// Redirect hops one navigation may take before we call it a loop. The longest legitimate chain
/// is login → spawn → spawn-pending, or lab → authorize → callback → lab, plus JupyterHub's
/// `?redirects=N` back-off hops while a route is being added.
const MAX_REDIRECTS: usize = 20;

/// What every simulated user of one run shares.
#[derive(Debug)]
pub struct RunContext {
    /// The hub's public URL (the proxy), without a trailing slash.
    pub base: Url,
    pub scenario: Scenario,
    /// An admin API token for stopping servers through the REST API; without one, users stop
    /// their own server with their cookies, as the hub's home page does.
    pub api_token: Option<Password>,
}

/// Why a step did not succeed. Rendered without query strings or user names, so reasons group
/// across users and never carry OAuth codes or XSRF tokens.
#[derive(Debug)]
enum StepError {
    Status { status: StatusCode, path: String },
    Transport { path: String, message: String },
    Timeout,
    TooManyRetries(u32),
    Protocol(String),
}

impl StepError {
    fn reason(&self) -> String {
        match self {
            StepError::Status { status, path } => format!("HTTP {} at {path}", status.as_u16()),
            StepError::Transport { path, message } => format!("{message} at {path}"),
            StepError::Timeout => "user deadline passed".to_owned(),
            StepError::TooManyRetries(n) => format!("still throttled (HTTP 429) after {n} retries"),
            StepError::Protocol(message) => message.clone(),
        }
    }
}

/// A browser: one cookie jar, no automatic redirects.
struct Browser<'a> {
    context: &'a RunContext,
    user: String,
    client: reqwest::Client,
    jar: Arc<Jar>,
    deadline: Instant,
    retries: u32,
}

/// Where a navigation ended.
enum Landing {
    /// A non-redirect answer at this URL.
    Page(Url, Response),
    /// The navigation reached a URL accepted by the stop predicate, which was not requested.
    Stopped(Url),
}

impl<'a> Browser<'a> {
    fn new(context: &'a RunContext, user: String) -> Result<Browser<'a>, reqwest::Error> {
        crate::install_crypto_provider();
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Browser {
            context,
            user,
            client,
            jar,
            deadline: Instant::now() + context.scenario.user_timeout,
            retries: 0,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.context.base.clone();
        url.set_path(path);
        url
    }

    /// The URL's path with this user's name replaced, for reasons that group across users.
    fn path_label(&self, url: &Url) -> String {
        url.path().replace(&self.user, "<u>")
    }

    /// The value of cookie `name` the jar would send to `url`.
    fn cookie(&self, url: &Url, name: &str) -> Option<String> {
        let header = self.jar.cookies(url)?;
        let header = header.to_str().ok()?.to_owned();
        header.split("; ").find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    }

    /// Sends a request, honouring HTTP 429 with its `Retry-After` (one retry each), until the
    /// answer is something else, the retry budget is spent or the user's deadline passes.
    async fn send(
        &mut self,
        url: &Url,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, StepError> {
        let scenario = &self.context.scenario;
        loop {
            let response = tokio::time::timeout_at(self.deadline, build(&self.client).send())
                .await
                .map_err(|_| StepError::Timeout)?
                .map_err(|error| StepError::Transport {
                    path: self.path_label(url),
                    message: transport_message(&error),
                })?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(response);
            }
            if self.retries >= scenario.max_retries {
                return Err(StepError::TooManyRetries(self.retries));
            }
            let wait =
                retry_after(response.headers().get(RETRY_AFTER)).min(scenario.max_retry_after);
            if Instant::now() + wait > self.deadline {
                return Err(StepError::Timeout);
            }
            self.retries += 1;
            // Waiting out Retry-After is the client behaviour being simulated, not a poll.
            tokio::time::sleep(wait).await;
        }
    }

    /// GETs `url` and follows redirects by hand until a non-redirect answer, or until a
    /// `Location` satisfies `stop`.
    async fn navigate(
        &mut self,
        start: Url,
        stop: impl Fn(&Url) -> bool,
    ) -> Result<Landing, StepError> {
        let mut url = start;
        for _ in 0..MAX_REDIRECTS {
            let request_url = url.clone();
            let response = self
                .send(&url, |client| client.get(request_url.clone()))
                .await?;
            if !response.status().is_redirection() {
                return Ok(Landing::Page(url, response));
            }
            let next = self.location(&url, &response)?;
            if stop(&next) {
                return Ok(Landing::Stopped(next));
            }
            url = next;
        }
        Err(StepError::Protocol(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            self.path_label(&url)
        )))
    }

    fn location(&self, from: &Url, response: &Response) -> Result<Url, StepError> {
        response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| from.join(location).ok())
            .ok_or_else(|| {
                StepError::Protocol(format!(
                    "HTTP {} without a usable Location at {}",
                    response.status().as_u16(),
                    self.path_label(from)
                ))
            })
    }

    async fn text(&self, url: &Url, response: Response) -> Result<String, StepError> {
        tokio::time::timeout_at(self.deadline, response.text())
            .await
            .map_err(|_| StepError::Timeout)?
            .map_err(|error| StepError::Transport {
                path: self.path_label(url),
                message: transport_message(&error),
            })
    }

    fn expect_page(&self, landing: Landing) -> Result<(Url, Response), StepError> {
        match landing {
            Landing::Page(url, response) if response.status().is_success() => Ok((url, response)),
            Landing::Page(url, response) => Err(StepError::Status {
                status: response.status(),
                path: self.path_label(&url),
            }),
            Landing::Stopped(url) => Err(StepError::Protocol(format!(
                "unexpected redirect to {}",
                self.path_label(&url)
            ))),
        }
    }

    /// `GET /hub/login`, then the form POST. Returns where the hub sends a fresh login.
    async fn login(&mut self) -> Result<Url, StepError> {
        let login_url = self.url("/hub/login");
        let landing = self.navigate(login_url.clone(), |_| false).await?;
        let (page_url, response) = self.expect_page(landing)?;
        let html = self.text(&page_url, response).await?;
        let xsrf = hidden_input_value(&html, "_xsrf")
            .or_else(|| self.cookie(&login_url, "_xsrf"))
            .ok_or_else(|| StepError::Protocol("login page has no _xsrf".into()))?;
        let password = self.context.scenario.password.expose().to_owned();
        let user = self.user.clone();
        let response = self
            .send(&login_url, |client| {
                client.post(login_url.clone()).form(&[
                    ("username", user.as_str()),
                    ("password", password.as_str()),
                    ("_xsrf", xsrf.as_str()),
                ])
            })
            .await?;
        if !response.status().is_redirection() {
            return Err(StepError::Protocol(format!(
                "login rejected (HTTP {} from the login form)",
                response.status().as_u16()
            )));
        }
        self.location(&login_url, &response)
    }

    /// From the post-login redirect to a ready server: `/hub/spawn` → `/hub/spawn-pending/<u>`,
    /// then the progress event stream until `ready`.
    async fn spawn_until_ready(&mut self, after_login: Url) -> Result<(), StepError> {
        let user_prefix = format!("/user/{}/", self.user);
        // A fresh login lands on /hub/ or /hub/spawn; either leads to the spawn.
        let start = if after_login.path().starts_with(&user_prefix) {
            after_login
        } else {
            self.url("/hub/spawn")
        };
        let landing = self
            .navigate(start, |next| next.path().starts_with(&user_prefix))
            .await?;
        let page_url = match landing {
            // Already running (or ready within the hub's short wait): the hub sent us to it.
            Landing::Stopped(_) => return Ok(()),
            Landing::Page(url, response) if response.status().is_success() => url,
            Landing::Page(url, response) => {
                return Err(StepError::Status {
                    status: response.status(),
                    path: self.path_label(&url),
                });
            }
        };
        if !page_url.path().starts_with("/hub/spawn-pending/") {
            return Err(StepError::Protocol(format!(
                "spawn ended on {} instead of the pending page",
                self.path_label(&page_url)
            )));
        }
        self.wait_for_ready_event().await
    }

    /// Reads `GET /hub/api/users/<u>/server/progress?_xsrf=…` until a terminal event.
    async fn wait_for_ready_event(&mut self) -> Result<(), StepError> {
        let mut url = self.url(&format!("/hub/api/users/{}/server/progress", self.user));
        let xsrf = self
            .cookie(&url, "_xsrf")
            .ok_or_else(|| StepError::Protocol("no hub _xsrf cookie after login".into()))?;
        url.query_pairs_mut().append_pair("_xsrf", &xsrf);
        let request_url = url.clone();
        let response = self
            .send(&url, |client| {
                client
                    .get(request_url.clone())
                    .header("Accept", "text/event-stream")
            })
            .await?;
        if !response.status().is_success() {
            return Err(StepError::Status {
                status: response.status(),
                path: self.path_label(&url),
            });
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        loop {
            let chunk = tokio::time::timeout_at(self.deadline, stream.next())
                .await
                .map_err(|_| StepError::Timeout)?;
            let Some(chunk) = chunk else {
                return Err(StepError::Protocol(
                    "progress stream ended without a ready or failed event".into(),
                ));
            };
            let chunk = chunk.map_err(|error| StepError::Transport {
                path: self.path_label(&url),
                message: transport_message(&error),
            })?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                match progress_event_outcome(&event) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(message)) => {
                        return Err(StepError::Protocol(format!("spawn failed: {message}")));
                    }
                    None => {}
                }
            }
        }
    }

    /// `GET /user/<u>/lab` through the server's OAuth dance with the hub to the lab HTML.
    async fn open_lab(&mut self) -> Result<(), StepError> {
        let lab_url = self.url(&format!("/user/{}/lab", self.user));
        let landing = self.navigate(lab_url, |_| false).await?;
        let (url, response) = self.expect_page(landing)?;
        let html = self.text(&url, response).await?;
        if !html.contains("JupyterLab") {
            return Err(StepError::Protocol(format!(
                "{} did not serve a JupyterLab page",
                self.path_label(&url)
            )));
        }
        Ok(())
    }

    /// `POST /user/<u>/api/kernels` with the server's XSRF token; returns the kernel id.
    async fn start_kernel(&mut self) -> Result<String, StepError> {
        let url = self.url(&format!("/user/{}/api/kernels", self.user));
        let xsrf = self
            .cookie(&url, "_xsrf")
            .ok_or_else(|| StepError::Protocol("no _xsrf cookie from the user server".into()))?;
        let request_url = url.clone();
        let response = self
            .send(&url, |client| {
                client
                    .post(request_url.clone())
                    .header("X-XSRFToken", &xsrf)
                    .json(&json!({"name": "python3"}))
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(StepError::Status {
                status: response.status(),
                path: self.path_label(&url),
            });
        }
        let body = self.text(&url, response).await?;
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|kernel| kernel["id"].as_str().map(str::to_owned))
            .ok_or_else(|| StepError::Protocol("kernel model without an id".into()))
    }

    /// Opens the kernel's `channels` WebSocket with the browser's cookies, executes `print(6*7)`
    /// and waits for its output, the `execute_reply` and the kernel going idle.
    async fn run_cell(&mut self, kernel_id: &str) -> Result<(), StepError> {
        let http_url = self.url(&format!(
            "/user/{}/api/kernels/{kernel_id}/channels",
            self.user
        ));
        let session = unique_id("session");
        let mut ws_url = http_url.clone();
        let scheme = if http_url.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        ws_url
            .set_scheme(scheme)
            .map_err(|()| StepError::Protocol("cannot form a WebSocket URL".into()))?;
        ws_url.query_pairs_mut().append_pair("session_id", &session);
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|error| StepError::Protocol(format!("WebSocket request: {error}")))?;
        if let Some(cookies) = self.jar.cookies(&http_url) {
            request.headers_mut().insert("Cookie", cookies);
        }
        let path = self.path_label(&http_url).replace(kernel_id, "<kernel>");
        let ws_error = |error: tungstenite::Error| StepError::Transport {
            path: path.clone(),
            message: format!("WebSocket: {error}"),
        };
        let (mut socket, _) =
            tokio::time::timeout_at(self.deadline, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| StepError::Timeout)?
                .map_err(ws_error)?;
        let msg_id = unique_id("execute");
        let request = json!({
            "header": {
                "msg_id": msg_id, "msg_type": "execute_request", "session": session,
                "username": self.user, "version": "5.3", "date": "",
            },
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {
                "code": "print(6*7)", "silent": false, "store_history": true,
                "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
            },
        });
        socket
            .send(tungstenite::Message::text(request.to_string()))
            .await
            .map_err(ws_error)?;
        let mut cell = CellProgress::default();
        while !cell.complete() {
            let message = tokio::time::timeout_at(self.deadline, socket.next())
                .await
                .map_err(|_| StepError::Timeout)?
                .ok_or_else(|| StepError::Protocol("kernel WebSocket closed mid-cell".into()))?
                .map_err(ws_error)?;
            if let tungstenite::Message::Text(text) = message
                && let Ok(message) = serde_json::from_str::<Value>(&text)
            {
                cell.observe(&message, &msg_id)
                    .map_err(StepError::Protocol)?;
            }
        }
        let _ = socket.close(None).await;
        Ok(())
    }

    /// Stops the server: `DELETE /hub/api/users/<u>/server`, then polls the user model until no
    /// server is left (the hub answers 202 while a stop is slow).
    async fn stop_server(&mut self) -> Result<(), StepError> {
        let server_url = self.url(&format!("/hub/api/users/{}/server", self.user));
        let user_url = self.url(&format!("/hub/api/users/{}", self.user));
        let auth = self.api_auth(&server_url);
        let request_url = server_url.clone();
        let response = self
            .send(&server_url, |client| {
                with_auth(client.request(Method::DELETE, request_url.clone()), &auth)
            })
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT => return Ok(()),
            StatusCode::ACCEPTED => {}
            status => {
                return Err(StepError::Status {
                    status,
                    path: self.path_label(&server_url),
                });
            }
        }
        let mut pause = Duration::from_millis(100);
        loop {
            let request_url = user_url.clone();
            let response = self
                .send(&user_url, |client| {
                    with_auth(client.get(request_url.clone()), &auth)
                })
                .await?;
            if response.status().is_success() {
                let body = self.text(&user_url, response).await?;
                let model: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if model["server"].is_null() && model["pending"].is_null() {
                    return Ok(());
                }
            }
            if Instant::now() + pause > self.deadline {
                return Err(StepError::Timeout);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// How API calls authenticate: the run's API token, or this browser's cookies plus the hub's
    /// XSRF token (what the home page's JavaScript sends).
    fn api_auth(&self, url: &Url) -> ApiAuth {
        match &self.context.api_token {
            Some(token) => ApiAuth::Token(format!("token {}", token.expose())),
            None => ApiAuth::Cookie(self.cookie(url, "_xsrf").unwrap_or_default()),
        }
    }
}

enum ApiAuth {
    Token(String),
    Cookie(String),
}

fn with_auth(builder: reqwest::RequestBuilder, auth: &ApiAuth) -> reqwest::RequestBuilder {
    match auth {
        ApiAuth::Token(header) => builder.header("Authorization", header),
        ApiAuth::Cookie(xsrf) => builder.header("X-XSRFToken", xsrf),
    }
}

/// Runs user `index`'s whole session and records what happened. Never fails: problems are part
/// of the outcome.
pub async fn simulate_user(context: &RunContext, index: u32) -> UserOutcome {
    let user = context.scenario.user_name(index);
    let mut outcome = UserOutcome {
        user: user.clone(),
        ..UserOutcome::default()
    };
    let mut browser = match Browser::new(context, user) {
        Ok(browser) => browser,
        Err(error) => {
            outcome.failure = Some(Failure {
                phase: Phase::Login,
                reason: format!("cannot build an HTTP client: {}", error.without_url()),
            });
            return outcome;
        }
    };
    let result = run_phases(&mut browser, &mut outcome).await;
    outcome.retries = browser.retries;
    if let Err((phase, error)) = result {
        outcome.failure = Some(Failure {
            phase,
            reason: error.reason(),
        });
    }
    outcome
}

async fn run_phases(
    browser: &mut Browser<'_>,
    outcome: &mut UserOutcome,
) -> Result<(), (Phase, StepError)> {
    let scenario = &browser.context.scenario;
    let (kernel, stop, idle) = (scenario.kernel, scenario.stop, scenario.idle);
    let login_started = Instant::now();
    let after_login = browser.login().await.map_err(|e| (Phase::Login, e))?;
    outcome
        .timings
        .insert(Phase::Login, login_started.elapsed());

    let spawn_started = Instant::now();
    browser
        .spawn_until_ready(after_login)
        .await
        .map_err(|e| (Phase::SpawnReady, e))?;
    outcome
        .timings
        .insert(Phase::SpawnReady, spawn_started.elapsed());
    outcome
        .timings
        .insert(Phase::LoginToReady, login_started.elapsed());

    let lab_started = Instant::now();
    browser.open_lab().await.map_err(|e| (Phase::LabPage, e))?;
    outcome
        .timings
        .insert(Phase::LabPage, lab_started.elapsed());

    if kernel {
        let kernel_started = Instant::now();
        let kernel_id = browser
            .start_kernel()
            .await
            .map_err(|e| (Phase::KernelStart, e))?;
        outcome
            .timings
            .insert(Phase::KernelStart, kernel_started.elapsed());
        let cell_started = Instant::now();
        browser
            .run_cell(&kernel_id)
            .await
            .map_err(|e| (Phase::CellRoundTrip, e))?;
        outcome
            .timings
            .insert(Phase::CellRoundTrip, cell_started.elapsed());
    }
    outcome.served = true;

    // The user reads and thinks; this is simulated time on the page, not a wait for a condition.
    tokio::time::sleep(idle).await;

    if stop {
        let stop_started = Instant::now();
        browser.stop_server().await.map_err(|e| (Phase::Stop, e))?;
        outcome.timings.insert(Phase::Stop, stop_started.elapsed());
    }
    Ok(())
}

/// What one `execute_request` has produced so far on the kernel's channels.
#[derive(Debug, Default)]
struct CellProgress {
    output: String,
    replied: bool,
    idle: bool,
}

impl CellProgress {
    fn complete(&self) -> bool {
        self.replied && self.idle && self.output.contains("42")
    }

    /// Takes one Jupyter message; errors when the cell failed.
    fn observe(&mut self, message: &Value, msg_id: &str) -> Result<(), String> {
        if message["parent_header"]["msg_id"] != msg_id {
            return Ok(());
        }
        match message["msg_type"].as_str().unwrap_or_default() {
            "stream" => self
                .output
                .push_str(message["content"]["text"].as_str().unwrap_or_default()),
            "execute_reply" => {
                let status = message["content"]["status"].as_str().unwrap_or_default();
                if status != "ok" {
                    return Err(format!("cell answered execute_reply status {status:?}"));
                }
                self.replied = true;
            }
            "status" if message["content"]["execution_state"] == "idle" => self.idle = true,
            "error" => {
                return Err(format!(
                    "cell raised {}",
                    message["content"]["ename"].as_str().unwrap_or("an error")
                ));
            }
            _ => {}
        }
        if self.replied && self.idle && !self.output.contains("42") {
            return Err(format!("cell printed {:?}, not 42", self.output));
        }
        Ok(())
    }
}

/// The terminal state one server-sent event announces: `Some(Ok)` for ready, `Some(Err)` for
/// failed, `None` for progress or keep-alives.
fn progress_event_outcome(event: &str) -> Option<Result<(), String>> {
    let data: String = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let event: Value = serde_json::from_str(&data).ok()?;
    if event["ready"] == true {
        return Some(Ok(()));
    }
    if event["failed"] == true {
        let message = event["message"].as_str().unwrap_or("no message");
        return Some(Err(message.to_owned()));
    }
    None
}

/// Seconds from a `Retry-After` header (delta-seconds form); one second when absent or in the
/// HTTP-date form, so a throttled client still backs off.
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .unwrap_or(Duration::from_secs(1))
}

/// The value attribute of the `<input name="…">` in `html`.
fn hidden_input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    html.match_indices("<input").find_map(|(start, _)| {
        let tag = &html[start..start + html[start..].find('>')?];
        if !tag.contains(&marker) {
            return None;
        }
        let value_start = tag.find("value=\"")? + "value=\"".len();
        let value_end = value_start + tag[value_start..].find('"')?;
        Some(tag[value_start..value_end].replace("&amp;", "&"))
    })
}

/// A transport error without the URL (which may carry a code or token in its query).
fn transport_message(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    match innermost {
        Some(cause) => format!("{kind} ({cause})"),
        None => kind.to_owned(),
    }
}

/// An identifier unique within this process, for Jupyter message and session ids.
fn unique_id(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "loadsim-{kind}-{}-{started:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hidden_xsrf_input() {
        let html = r#"<form><input type="text" name="username" value="x"/>
            <input type="hidden" name="_xsrf" value="2|ab&amp;cd|ef"/></form>"#;
        assert_eq!(
            hidden_input_value(html, "_xsrf").as_deref(),
            Some("2|ab&cd|ef")
        );
        assert_eq!(hidden_input_value(html, "next"), None);
    }

    #[test]
    fn retry_after_defaults_to_one_second() {
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("37"))),
            Duration::from_secs(37)
        );
        assert_eq!(retry_after(None), Duration::from_secs(1));
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn progress_events_are_classified() {
        assert_eq!(
            progress_event_outcome("data: {\"progress\": 50, \"message\": \"Spawning\"}\n\n"),
            None
        );
        assert_eq!(progress_event_outcome("\n\n"), None, "keep-alive");
        assert_eq!(
            progress_event_outcome(
                "data: {\"progress\": 100, \"ready\": true, \"url\": \"/user/a/\"}\n\n"
            ),
            Some(Ok(()))
        );
        assert_eq!(
            progress_event_outcome(
                "data: {\"failed\": true, \"message\": \"Spawn failed: boom\"}\n\n"
            ),
            Some(Err("Spawn failed: boom".into()))
        );
    }

    fn kernel_message(msg_type: &str, parent: &str, content: Value) -> Value {
        json!({"msg_type": msg_type, "parent_header": {"msg_id": parent}, "content": content})
    }

    #[test]
    fn a_cell_completes_on_output_reply_and_idle_of_its_own_request() {
        let mut cell = CellProgress::default();
        let observe = |cell: &mut CellProgress, message: Value| cell.observe(&message, "m1");
        observe(
            &mut cell,
            kernel_message("stream", "other", json!({"text": "42\n"})),
        )
        .unwrap();
        assert!(cell.output.is_empty(), "other requests' output is ignored");
        observe(
            &mut cell,
            kernel_message("status", "m1", json!({"execution_state": "busy"})),
        )
        .unwrap();
        observe(
            &mut cell,
            kernel_message("stream", "m1", json!({"text": "42\n"})),
        )
        .unwrap();
        assert!(!cell.complete());
        observe(
            &mut cell,
            kernel_message("execute_reply", "m1", json!({"status": "ok"})),
        )
        .unwrap();
        assert!(!cell.complete(), "not idle yet");
        observe(
            &mut cell,
            kernel_message("status", "m1", json!({"execution_state": "idle"})),
        )
        .unwrap();
        assert!(cell.complete());

        let mut failing = CellProgress::default();
        let error = failing
            .observe(
                &kernel_message("error", "m1", json!({"ename": "NameError"})),
                "m1",
            )
            .expect_err("error message");
        assert!(error.contains("NameError"));
        let mut silent = CellProgress::default();
        silent
            .observe(
                &kernel_message("execute_reply", "m1", json!({"status": "ok"})),
                "m1",
            )
            .unwrap();
        let wrong = silent
            .observe(
                &kernel_message("status", "m1", json!({"execution_state": "idle"})),
                "m1",
            )
            .expect_err("idle without output");
        assert!(wrong.contains("not 42"));
    }

    #[test]
    fn failure_reasons_hide_user_names_and_queries() {
        let context = RunContext {
            base: Url::parse("http://127.0.0.1:9").unwrap(),
            scenario: Scenario::minimal("t", 1),
            api_token: None,
        };
        let browser = Browser::new(&context, "loadsim-0001".into()).expect("client");
        let url =
            Url::parse("http://127.0.0.1:9/user/loadsim-0001/oauth_callback?code=SECRET").unwrap();
        let reason = StepError::Status {
            status: StatusCode::FORBIDDEN,
            path: browser.path_label(&url),
        }
        .reason();
        assert_eq!(reason, "HTTP 403 at /user/<u>/oauth_callback");
    }
}
