//! Forwarding of public traffic: route lookup, header rewriting, streaming to the target, WebSocket tunnels,
//! and CHP-style error answers.

use std::borrow::Cow;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::body::{MeteredBody, ProxyBody};
use crate::metrics::{GaugeGuard, ProxyMetrics, UpstreamErrorKind};
use crate::routes::{ActivityClock, Route, RouteTable, Target};

/// CHP's health check path, answered on the public port before routing.
pub(crate) const HEALTH_PATH: &str = "/_chp_healthz";

/// How long the other direction of a WebSocket tunnel may keep going after one side closed.
const TUNNEL_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Bytes buffered per direction of a WebSocket tunnel.
const TUNNEL_BUFFER: usize = 4096;

/// How long fetching a page from `--error-target` may take before we fall back to plain text.
const ERROR_TARGET_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the de-facto `proxy-connection`).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_PROTOCOL: HeaderName = HeaderName::from_static("sec-websocket-protocol");
const SEC_WEBSOCKET_EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Characters kept verbatim in the `url` query parameter sent to the error target (like `URLSearchParams`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Forwarding behaviour chosen by flags.
#[derive(Debug, Clone)]
pub(crate) struct ForwardOptions {
    pub(crate) x_forward: bool,
    pub(crate) include_prefix: bool,
    pub(crate) prepend_path: bool,
    /// With a trailing `/`, so `<error_target><code>` is the page URL.
    pub(crate) error_target: Option<String>,
    pub(crate) proxy_timeout: Option<Duration>,
    pub(crate) custom_headers: Vec<(HeaderName, HeaderValue)>,
}

/// The pooled client for targets, `http://` and `https://`.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// State shared by every public connection.
#[derive(Debug)]
pub(crate) struct ForwardState {
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) client: UpstreamClient,
    /// Idle upstream connections of the HTTP/1.1 relay.
    pub(crate) relay_pool: crate::relay::UpstreamPool,
    pub(crate) options: ForwardOptions,
    /// Cancelled when the shutdown grace period ends: closes connections and WebSocket tunnels still open.
    pub(crate) force_close: CancellationToken,
}

/// What we know about the client connection a request came in on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) encrypted: bool,
    /// The client's IP as an `X-Forwarded-For` value, formatted once per connection.
    pub(crate) peer_ip: HeaderValue,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, encrypted: bool) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        Self { encrypted, peer_ip }
    }
}

/// The public port's request handler.
pub(crate) async fn handle(
    state: Arc<ForwardState>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = forward(&state, &conn, req).await;
    state.metrics.count_response(response.status());
    Ok(response)
}

async fn forward(
    state: &ForwardState,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.uri().path_and_query().map(PathAndQuery::as_str) == Some(HEALTH_PATH) {
        return fixed_response(StatusCode::OK, "application/json", r#"{"status":"OK"}"#);
    }
    // RFC 8441: a WebSocket over HTTP/2 arrives as a CONNECT with `:protocol websocket`; upstream
    // it becomes an HTTP/1.1 Upgrade, and the client gets 200 instead of 101.
    let h2_websocket = is_h2_websocket(&req);
    let upgrade = if h2_websocket {
        Some(HeaderValue::from_static("websocket"))
    } else {
        upgrade_protocol(&req)
    };
    let is_upgrade = upgrade.is_some();
    let request_counter = if is_upgrade {
        &state.metrics.requests_ws
    } else {
        &state.metrics.requests_web
    };
    request_counter.fetch_add(1, Ordering::Relaxed);

    let Some(route) = find_route(&state.routes, &req) else {
        return error_response(state, StatusCode::NOT_FOUND, req.uri(), is_upgrade).await;
    };
    let upstream_uri = match upstream_uri(state, &route, req.uri()) {
        Some(uri) => uri,
        None => {
            tracing::error!(route = route.path(), "route target is not a usable URL");
            return error_response(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                req.uri(),
                is_upgrade,
            )
            .await;
        }
    };
    let original_uri = req.uri().clone();
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    prepare_request_headers(state, conn, &mut parts.headers, &parts.uri, upgrade);
    if h2_websocket {
        parts.method = Method::GET;
        // HTTP/2 clients send no key (RFC 8441 §5); an HTTP/1.1 upstream insists on one.
        parts
            .headers
            .entry(SEC_WEBSOCKET_KEY)
            .or_insert_with(websocket_key);
    }
    parts.uri = upstream_uri;
    parts.version = Version::HTTP_11;
    let activity = route.activity().clone();
    let body = ProxyBody::Streamed(MeteredBody::new(
        body,
        Some(activity.clone()),
        state.metrics.clone(),
        bytes_in,
    ));

    let sent = state.client.request(Request::from_parts(parts, body));
    let outcome = match state.options.proxy_timeout {
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .map_err(|_elapsed| UpstreamErrorKind::Timeout),
        None => Ok(sent.await),
    };
    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let kind = if error.is_connect() {
                UpstreamErrorKind::Connect
            } else {
                UpstreamErrorKind::Other
            };
            state.metrics.count_upstream_error(kind);
            tracing::warn!(route = route.path(), path = original_uri.path(), error = %ErrorChain(&error), "upstream request failed");
            return error_response(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                &original_uri,
                is_upgrade,
            )
            .await;
        }
        Err(kind) => {
            state.metrics.count_upstream_error(kind);
            tracing::warn!(
                route = route.path(),
                path = original_uri.path(),
                "upstream timed out"
            );
            return error_response(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                &original_uri,
                is_upgrade,
            )
            .await;
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols unasked; passing the 101 on would wedge the client.
            state.metrics.count_upstream_error(UpstreamErrorKind::Other);
            return error_response(state, StatusCode::BAD_GATEWAY, &original_uri, false).await;
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(tunnel(
            client_upgrade,
            upstream_upgrade,
            activity,
            state.metrics.clone(),
            state.force_close.clone(),
        ));
        let (parts, _empty) = response.into_parts();
        if h2_websocket {
            tracing::debug!(
                route = route.path(),
                "WebSocket over HTTP/2 tunnelled to HTTP/1.1"
            );
            state
                .metrics
                .websockets_over_http2
                .fetch_add(1, Ordering::Relaxed);
            // 200 opens the tunnel on the HTTP/2 stream; only the negotiated subprotocol and
            // extensions carry over (the rest of a 101 is HTTP/1.1 connection business).
            let mut accepted = Response::new(ProxyBody::empty());
            for name in [SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_EXTENSIONS] {
                for value in parts.headers.get_all(&name) {
                    accepted.headers_mut().append(name.clone(), value.clone());
                }
            }
            return accepted;
        }
        return Response::from_parts(parts, ProxyBody::empty());
    }

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // Like CHP, only successful answers count as activity; a flood of errors must not keep a server alive.
    let success = parts.status.as_u16() < 300;
    if success {
        activity.touch();
    }
    let body = MeteredBody::new(
        body,
        success.then_some(activity),
        state.metrics.clone(),
        bytes_out,
    );
    Response::from_parts(parts, ProxyBody::Streamed(body))
}

pub(crate) fn bytes_in(metrics: &ProxyMetrics) -> &AtomicU64 {
    &metrics.bytes_in
}

pub(crate) fn bytes_out(metrics: &ProxyMetrics) -> &AtomicU64 {
    &metrics.bytes_out
}

/// An RFC 8441 extended CONNECT for a WebSocket (only HTTP/2 connections carry one).
fn is_h2_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// A fresh `Sec-WebSocket-Key`: 16 unpredictable bytes, base64. It only has to differ between
/// handshakes (it guards against caching intermediaries, not attackers), so std's randomly keyed
/// hasher is a sufficient source.
fn websocket_key() -> HeaderValue {
    use std::hash::{BuildHasher, Hasher};
    static HANDSHAKES: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(HANDSHAKES.fetch_add(1, Ordering::Relaxed));
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    HeaderValue::from_str(&base64(&bytes)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Upgrade` header of an HTTP/1.1 upgrade request (`Connection: upgrade` plus `Upgrade`).
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(header::UPGRADE)?;
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade.then(|| upgrade.clone())
}

/// The host a request was sent to, without its port (CHP splits at the first `:`).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let host = match req.headers().get(header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    host.split(':').next()
}

fn find_route(routes: &RouteTable, req: &Request<Incoming>) -> Option<Arc<Route>> {
    route_for(routes, req.uri().path(), request_host(req))
}

/// The route for a raw (still percent-encoded) request path; with host routing, `host` (without its
/// port) is the key's first segment.
pub(crate) fn route_for(
    routes: &RouteTable,
    raw_path: &str,
    host: Option<&str>,
) -> Option<Arc<Route>> {
    let path = percent_decode_str(raw_path).decode_utf8_lossy();
    if routes.host_routing() {
        return routes.lookup(&format!("/{}{path}", host.unwrap_or_default()));
    }
    routes.lookup(&path)
}

/// The URL to request upstream: the target's origin and [`upstream_path_and_query`].
fn upstream_uri(state: &ForwardState, route: &Route, original: &Uri) -> Option<Uri> {
    let target = route.target()?;
    let original_pq = original.path_and_query().map_or("/", PathAndQuery::as_str);
    let forwarded = upstream_path_and_query(state, route, target, original_pq);
    let path_and_query: PathAndQuery = match (forwarded, original.path_and_query()) {
        // The common case (origin-only target, full path forwarded) reuses the parsed original: no copy.
        (Cow::Borrowed(_), Some(pq)) => pq.clone(),
        (forwarded, _) => forwarded.parse().ok()?,
    };
    Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// The path and query to request upstream: the target's path prefix (`--no-prepend-path` drops it) and the
/// original path and query (minus the route prefix with `--no-include-prefix`). Borrowed when it is the
/// original unchanged.
pub(crate) fn upstream_path_and_query<'a>(
    state: &ForwardState,
    route: &Route,
    target: &Target,
    original_pq: &'a str,
) -> Cow<'a, str> {
    let forwarded_pq: Cow<'a, str> = if state.options.include_prefix {
        Cow::Borrowed(original_pq)
    } else {
        let prefix = route_prefix_in_url(route.path(), state.routes.host_routing());
        match original_pq.strip_prefix(prefix) {
            Some(rest) if prefix != "/" && !rest.starts_with('/') => Cow::Owned(format!("/{rest}")),
            Some(rest) if prefix != "/" => Cow::Borrowed(rest),
            _ => Cow::Borrowed(original_pq),
        }
    };
    let prefix = if state.options.prepend_path {
        target.path_prefix.as_str()
    } else {
        ""
    };
    match forwarded_pq {
        Cow::Borrowed(pq) if prefix.is_empty() && pq.len() == original_pq.len() => {
            Cow::Borrowed(pq)
        }
        forwarded_pq => Cow::Owned(format!("{prefix}{forwarded_pq}")),
    }
}

/// The URL path part of a route key: with host routing the first segment is the host, not a path segment.
fn route_prefix_in_url(route_path: &str, host_routing: bool) -> &str {
    if !host_routing {
        return route_path;
    }
    match route_path[1..].find('/') {
        Some(cut) => &route_path[cut + 1..],
        None => "/",
    }
}

fn prepare_request_headers(
    state: &ForwardState,
    conn: &ConnInfo,
    headers: &mut HeaderMap,
    original_uri: &Uri,
    upgrade: Option<HeaderValue>,
) {
    strip_hop_by_hop(headers);
    let is_upgrade = upgrade.is_some();
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    // HTTP/2 clients send `:authority` instead of `Host`; the upstream speaks HTTP/1.1 and needs `Host`.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = original_uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    if state.options.x_forward {
        // Static values and the per-connection client IP cover the common case without
        // formatting or allocating per request.
        let port = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.rsplit_once(':'))
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|port| HeaderValue::from_str(port).ok())
            .unwrap_or_else(|| HeaderValue::from_static(if conn.encrypted { "443" } else { "80" }));
        let proto = match (is_upgrade, conn.encrypted) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "ws",
            (true, true) => "wss",
        };
        append_forwarded(headers, X_FORWARDED_FOR, conn.peer_ip.clone());
        append_forwarded(headers, X_FORWARDED_PORT, port);
        append_forwarded(headers, X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        if !headers.contains_key(X_FORWARDED_HOST) {
            let host = headers
                .get(header::HOST)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static(""));
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
    for (name, value) in &state.options.custom_headers {
        headers.insert(name.clone(), value.clone());
    }
}

/// Appends `value` to a comma-joined `X-Forwarded-*` header, as http-proxy does.
fn append_forwarded(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(entry) => {
            entry.insert(value);
        }
        header::Entry::Occupied(mut entry) => {
            let existing = entry.get().as_bytes();
            if existing.is_empty() {
                entry.insert(value);
                return;
            }
            let mut joined = Vec::with_capacity(existing.len() + 1 + value.len());
            joined.extend_from_slice(existing);
            joined.push(b',');
            joined.extend_from_slice(value.as_bytes());
            if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                entry.insert(joined);
            }
        }
    }
}

/// Removes hop-by-hop headers, including any named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers
        .get(header::CONNECTION)
        .and_then(|value| value.to_str().ok())
    {
        let listed: Vec<HeaderName> = connection
            .split(',')
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

pub(crate) fn fixed_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::fixed(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The plain answer CHP gives when it has no better page: the status and its reason phrase.
fn plain_status(status: StatusCode) -> Response<ProxyBody> {
    fixed_response(
        status,
        "text/plain; charset=utf-8",
        status.canonical_reason().unwrap_or("Error"),
    )
}

/// Answers a failed request: a bare status for upgrade requests; otherwise the `--error-target` page for the
/// status (with our status code), falling back to plain text.
pub(crate) async fn error_response(
    state: &ForwardState,
    status: StatusCode,
    original: &Uri,
    upgrade: bool,
) -> Response<ProxyBody> {
    if upgrade {
        let mut response = Response::new(ProxyBody::empty());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if let Some(error_target) = &state.options.error_target {
        match fetch_error_page(state, error_target, status, original).await {
            Ok(response) => return response,
            Err(reason) => {
                tracing::warn!(status = status.as_u16(), reason, "cannot fetch error page")
            }
        }
    }
    plain_status(status)
}

async fn fetch_error_page(
    state: &ForwardState,
    error_target: &str,
    status: StatusCode,
    original: &Uri,
) -> Result<Response<ProxyBody>, &'static str> {
    let original_pq = original.path_and_query().map_or("/", PathAndQuery::as_str);
    let url = format!(
        "{error_target}{}?url={}",
        status.as_u16(),
        utf8_percent_encode(original_pq, QUERY_VALUE)
    );
    let uri: Uri = url.parse().map_err(|_| "error target URL is invalid")?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(ProxyBody::empty())
        .map_err(|_| "error target URL is invalid")?;
    let page = tokio::time::timeout(ERROR_TARGET_TIMEOUT, state.client.request(request))
        .await
        .map_err(|_| "error target timed out")?
        .map_err(|_| "error target request failed")?;
    let (parts, body) = page.into_parts();
    let mut response = Response::new(ProxyBody::Streamed(MeteredBody::new(
        body,
        None,
        state.metrics.clone(),
        bytes_out,
    )));
    *response.status_mut() = status;
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    Ok(response)
}

/// Joins an upgraded client connection to the upgraded upstream connection, byte for byte.
///
/// When one direction ends (EOF or error), the other side's write half is shut down and the other direction
/// gets [`TUNNEL_CLOSE_GRACE`] to finish (a WebSocket close handshake); then both sockets are dropped, so a
/// peer that never closes cannot pin the tunnel open.
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    activity: Arc<ActivityClock>,
    metrics: Arc<ProxyMetrics>,
    shutdown: CancellationToken,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(error = %ErrorChain(&error), "upgrade did not complete");
            return;
        }
    };
    let _open = GaugeGuard::enter(metrics.clone(), |metrics| &metrics.websockets_active);
    let client = MeteredIo {
        inner: TokioIo::new(client),
        activity: activity.clone(),
        metrics: metrics.clone(),
        counter: bytes_in,
    };
    let upstream = MeteredIo {
        inner: TokioIo::new(upstream),
        activity,
        metrics,
        counter: bytes_out,
    };
    let (client_read, mut client_write) = tokio::io::split(client);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    // Idle tunnels are the common case (an open notebook's kernel socket): a small buffer per
    // direction keeps 5k idle WebSockets well under 100 MB, where `io::copy`'s 8 KiB each would not.
    let mut client_read = tokio::io::BufReader::with_capacity(TUNNEL_BUFFER, client_read);
    let mut upstream_read = tokio::io::BufReader::with_capacity(TUNNEL_BUFFER, upstream_read);
    let client_to_upstream = async {
        let _ = tokio::io::copy_buf(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let upstream_to_client = async {
        let _ = tokio::io::copy_buf(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::pin!(client_to_upstream, upstream_to_client);
    tokio::select! {
        () = &mut client_to_upstream => {
            let _ = tokio::time::timeout(TUNNEL_CLOSE_GRACE, upstream_to_client).await;
        }
        () = &mut upstream_to_client => {
            let _ = tokio::time::timeout(TUNNEL_CLOSE_GRACE, client_to_upstream).await;
        }
        () = shutdown.cancelled() => {}
    }
}

/// An upgraded connection that counts the bytes read from it and records route activity.
struct MeteredIo<T> {
    inner: T,
    activity: Arc<ActivityClock>,
    metrics: Arc<ProxyMetrics>,
    counter: fn(&ProxyMetrics) -> &AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            (self.counter)(&self.metrics).fetch_add(read as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Displays an error with its whole `source()` chain, for logs.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), encoded);
        }
    }

    #[test]
    fn websocket_keys_are_16_bytes_and_differ() {
        let (first, second) = (websocket_key(), websocket_key());
        assert_eq!(first.len(), 24);
        assert!(first.to_str().unwrap().ends_with("=="));
        assert_ne!(first, second);
    }
}
