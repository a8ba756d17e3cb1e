//! [`Browser`]: a scripted user agent that logs in, spawns and reaches JupyterLab the way a person
//! would, hop by hop; and [`KernelSocket`]: a Jupyter kernel WebSocket client.
//!
//! The flow follows JupyterHub's URLs, form fields and cookies, so it drives both stock JupyterHub
//! and hubfleet.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::wait_for;

/// More hops than any legitimate chain (login → spawn → pending → server → OAuth → callback → lab).
const MAX_REDIRECTS: usize = 20;

/// A cookie-keeping HTTP client over a hub's public URL that never follows redirects on its own.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
    base: Url,
}

impl Browser {
    /// A fresh browser (empty cookie jar) for the hub whose public URL is `base_url`.
    pub fn new(base_url: &str) -> Self {
        super::install_crypto_provider();
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build the browser's HTTP client");
        let base = Url::parse(base_url).expect("the public base URL parses");
        Self { client, jar, base }
    }

    /// The underlying client, sharing this browser's cookies, for requests the helpers don't cover.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The public base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Resolves `path` (absolute path, or a full URL) against the public base URL.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .unwrap_or_else(|err| panic!("resolve {path:?} against {}: {err}", self.base))
    }

    /// GET one URL without following redirects.
    pub async fn get(&self, path: &str) -> Response {
        let url = self.url(path);
        self.client
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"))
    }

    /// GET, then follow redirects one hop at a time; returns the final URL and response.
    pub async fn get_following(&self, path: &str) -> (Url, Response) {
        let first = self.url(path);
        let response = self.get(first.as_str()).await;
        self.follow(first, response).await
    }

    /// Follows the redirect chain starting at `response` (which came from `url`) with GETs.
    pub async fn follow(&self, mut url: Url, mut response: Response) -> (Url, Response) {
        let mut hops = vec![url.to_string()];
        while response.status().is_redirection() {
            assert!(
                hops.len() <= MAX_REDIRECTS,
                "redirect loop: {}",
                hops.join(" -> ")
            );
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("{} from {url} has no Location", response.status()));
            url = url
                .join(location)
                .unwrap_or_else(|err| panic!("bad Location {location:?} from {url}: {err}"));
            hops.push(url.to_string());
            response = self.get(url.as_str()).await;
        }
        (url, response)
    }

    /// Answers the hub's OAuth confirmation page (`response`, which came from `url`): checks it is
    /// one, posts its form with the page's `_xsrf` back to the same URL, then follows the
    /// redirects.
    pub async fn authorize_oauth(&self, url: Url, response: Response) -> (Url, Response) {
        assert_eq!(url.path(), "/hub/api/oauth2/authorize", "{url}");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let page = response.text().await.unwrap();
        let posted = self.confirm_oauth(&url, &page).await;
        self.follow(url, posted).await
    }

    /// Presses "Authorize" on the hub's OAuth confirmation `page` (shown at `url`): posts the
    /// page's `_xsrf` back to the same URL. Returns the answer without following it.
    pub async fn confirm_oauth(&self, url: &Url, page: &str) -> Response {
        assert!(page.contains("Authorize access"), "{page}");
        let xsrf = super::hidden_input_value(page, "_xsrf").expect("an _xsrf field");
        self.client()
            .post(url.as_str())
            .form(&[("_xsrf", xsrf.as_str())])
            .send()
            .await
            .unwrap()
    }

    /// Logs in through the form: GET `/hub/login`, then POST `username`, `password` and the
    /// hidden `_xsrf` field. Returns the POST's response without following its redirect.
    pub async fn login(&self, user: &str, password: &str) -> Response {
        let page = self.get("/hub/login").await;
        assert_eq!(page.status(), StatusCode::OK, "GET /hub/login");
        let html = page.text().await.expect("read the login page");
        let xsrf = hidden_input_value(&html, "_xsrf")
            .unwrap_or_else(|| panic!("no hidden _xsrf input on the login page:\n{html}"));
        let url = self.url("/hub/login");
        self.client
            .post(url.clone())
            .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"))
    }

    /// After [`Browser::login`]: requests a spawn and polls until `/user/<user>/lab` serves the
    /// JupyterLab page, following the hub's redirects and the single-user server's OAuth dance.
    /// Returns the page's HTML.
    pub async fn spawn_and_wait_for_lab(&self, user: &str, timeout: Duration) -> String {
        let (spawn_url, spawn_response) = self.get_following("/hub/spawn").await;
        let status = spawn_response.status();
        assert!(
            status.is_success(),
            "GET /hub/spawn ended at {spawn_url} with {status}: {}",
            spawn_response.text().await.unwrap_or_default()
        );
        let lab_path = format!("/user/{user}/lab");
        let last_seen = std::sync::Mutex::new(String::from("nothing yet"));
        let what = format!("JupyterLab at {lab_path}");
        let poll = wait_for(
            &what,
            // The outer timeout below fires first and reports the last hop seen.
            timeout + Duration::from_secs(5),
            || async {
                let (final_url, response) = self.get_following(&lab_path).await;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status == StatusCode::OK
                    && final_url.path() == lab_path
                    && body.contains("JupyterLab")
                {
                    return Some(body);
                }
                *last_seen.lock().expect("not poisoned") = format!("{status} at {final_url}");
                None
            },
        );
        match tokio::time::timeout(timeout, poll).await {
            Ok(html) => html,
            Err(_) => panic!(
                "JupyterLab at {lab_path} not served within {timeout:?}; last response: {}",
                last_seen.lock().expect("not poisoned")
            ),
        }
    }

    /// The `_xsrf` cookie the browser would send to `url_prefix` (e.g. `/user/alice/`), which the
    /// single-user server sets for its own path.
    pub fn xsrf_for(&self, url_prefix: &str) -> Option<String> {
        let cookies = self.cookie_header_for(url_prefix);
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "_xsrf").then(|| value.to_owned())
        })
    }

    /// The `Cookie` header value the browser would send to `url` ("" when none).
    pub fn cookie_header_for(&self, url: &str) -> String {
        self.jar
            .cookies(&self.url(url))
            .and_then(|value| value.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Starts a `python3` kernel on `user`'s server through the proxy; returns its id.
    pub async fn start_kernel(&self, user: &str) -> String {
        let prefix = format!("/user/{user}/");
        let xsrf = self
            .xsrf_for(&prefix)
            .unwrap_or_else(|| panic!("no _xsrf cookie for {prefix}; load the lab page first"));
        let url = self.url(&format!("{prefix}api/kernels"));
        let response = self
            .client
            .post(url.clone())
            .header("X-XSRFToken", xsrf)
            .json(&json!({"name": "python3"}))
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::CREATED, "POST {url}: {body}");
        let kernel: Value = serde_json::from_str(&body).expect("kernel model is JSON");
        kernel["id"]
            .as_str()
            .unwrap_or_else(|| panic!("kernel model without id: {body}"))
            .to_owned()
    }
}

/// The `value` of `<input … name="<name>" … value="…">` in an HTML page.
pub fn hidden_input_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    html.split("<input").skip(1).find_map(|tag| {
        let tag = &tag[..tag.find('>')?];
        if !tag.contains(&needle) {
            return None;
        }
        let start = tag.find("value=\"")? + "value=\"".len();
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_owned())
    })
}

/// Why a kernel execution did not produce output.
#[derive(Debug)]
pub enum KernelError {
    /// The WebSocket failed or closed.
    Socket(String),
    /// No `execute_reply` plus idle status before the deadline.
    Timeout { output_so_far: String },
    /// The kernel ran the code and reported an exception.
    Execution { ename: String, evalue: String },
    /// A message that is not valid Jupyter JSON.
    Protocol(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(err) => write!(f, "kernel websocket failed: {err}"),
            Self::Timeout { output_so_far } => {
                write!(
                    f,
                    "kernel did not finish in time; output so far: {output_so_far:?}"
                )
            }
            Self::Execution { ename, evalue } => write!(f, "kernel raised {ename}: {evalue}"),
            Self::Protocol(err) => write!(f, "bad kernel message: {err}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// How long one `execute` may take, from request to idle status.
const EXECUTE_DEADLINE: Duration = Duration::from_secs(60);

static MESSAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A WebSocket to a kernel's `channels` endpoint in the default JSON message format.
#[derive(Debug)]
pub struct KernelSocket {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
}

impl KernelSocket {
    /// Opens `ws://…/user/<user>/api/kernels/<kernel_id>/channels` with the browser's cookies.
    pub async fn open(browser: &Browser, user: &str, kernel_id: &str) -> Self {
        let session = unique_id("session");
        let path = format!("/user/{user}/api/kernels/{kernel_id}/channels");
        let mut url = browser.url(&path);
        url.set_scheme("ws").expect("http → ws");
        url.query_pairs_mut().append_pair("session_id", &session);
        let mut request = url
            .as_str()
            .into_client_request()
            .expect("a valid websocket request");
        let cookies = browser.cookie_header_for(&path);
        if !cookies.is_empty() {
            request.headers_mut().insert(
                header::COOKIE,
                cookies.parse().expect("cookie header is valid"),
            );
        }
        let (socket, _response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|err| panic!("open kernel websocket {url}: {err}"));
        Self { socket, session }
    }

    /// Runs `code` and returns everything it wrote to stdout/stderr.
    pub async fn execute(&mut self, code: &str) -> Result<String, KernelError> {
        let msg_id = unique_id("execute");
        let request = json!({
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "hubfleet-it",
                "session": self.session,
                "date": chrono::Utc::now().to_rfc3339(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": false,
                "store_history": false,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            },
            "channel": "shell",
            "buffers": [],
        });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .map_err(|err| KernelError::Socket(err.to_string()))?;

        let deadline = Instant::now() + EXECUTE_DEADLINE;
        let mut output = String::new();
        let mut error = None;
        let (mut replied, mut idle) = (false, false);
        while !(replied && idle) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(remaining, self.socket.next()).await;
            let frame = match next {
                Err(_) => {
                    return Err(KernelError::Timeout {
                        output_so_far: output,
                    });
                }
                Ok(None) => return Err(KernelError::Socket("closed".to_owned())),
                Ok(Some(Err(err))) => return Err(KernelError::Socket(err.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let text = match frame {
                Message::Text(text) => text,
                Message::Close(close) => {
                    return Err(KernelError::Socket(format!("closed by server: {close:?}")));
                }
                // Pings are answered by tungstenite; binary frames are not used by the JSON format.
                _ => continue,
            };
            let message: Value = serde_json::from_str(text.as_str())
                .map_err(|err| KernelError::Protocol(format!("{err}: {}", text.as_str())))?;
            if message["parent_header"]["msg_id"] != msg_id {
                continue;
            }
            let content = &message["content"];
            match message["msg_type"].as_str() {
                Some("stream") => output.push_str(content["text"].as_str().unwrap_or_default()),
                Some("error") => {
                    error = Some(KernelError::Execution {
                        ename: content["ename"].as_str().unwrap_or_default().to_owned(),
                        evalue: content["evalue"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                Some("execute_reply") => replied = true,
                Some("status") => idle |= content["execution_state"] == "idle",
                _ => {}
            }
        }
        match error {
            Some(error) => Err(error),
            None => Ok(output),
        }
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

fn unique_id(kind: &str) -> String {
    let n = MESSAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{kind}-{}-{nanos:x}-{n}", std::process::id())
}
