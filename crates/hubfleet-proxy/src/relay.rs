//! The HTTP/1.1 relay: the public port's fast path for ordinary HTTP/1.1 requests.
//!
//! hyper's server and pooled client cost about 15 µs of CPU per proxied request on our machines (nginx spends
//! 5.5): two complete parse/serialise rounds into `http` types, the client pool's channels and its
//! separate connection task. The relay parses a request head once with `httparse`, writes the rewritten head
//! (and a small body) upstream in one write, and copies the response back byte for byte, checking only its
//! framing. Each client connection keeps the upstream connection it last used, so a keep-alive client
//! costs no pool traffic; connections go back to a shared [`UpstreamPool`] when the client leaves.
//!
//! Only the common case is relayed. Everything else — upgrades (WebSockets), `CONNECT`, HTTP/1.0, chunked
//! or large request bodies, `Expect`, heads that do not parse or are long, HTTP/2 prior knowledge, the
//! health check, unknown routes, `https://` and unusable targets, targets that refuse connections — is
//! handed to the hyper path together with the bytes read so far ([`Relayed::HandOff`]). That path then
//! serves the rest of the connection, so its checks and answers (400s, 431, error pages) exist once.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::uri::{Authority, Scheme};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::forward::{self, ConnInfo, ErrorChain, ForwardState, HEALTH_PATH};
use crate::metrics::UpstreamErrorKind;
use crate::routes::Route;

/// Initial size of a client connection's read buffer; it grows for long heads and small bodies.
const CLIENT_BUFFER: usize = 4 * 1024;
/// Longer request heads go to the hyper path (which answers 431 past its own, larger limit).
const HEAD_LIMIT: usize = 16 * 1024;
/// Larger request bodies go to the hyper path, which streams them; the relay sends a body with its head.
const BODY_LIMIT: usize = 16 * 1024;
/// How long the rest of such a body may take once its head has arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// First read of a response; bodies that do not fit are streamed through a [`STREAM_BUFFER`].
const RESPONSE_BUFFER: usize = 16 * 1024;
const STREAM_BUFFER: usize = 64 * 1024;
/// Longest response head accepted, as on the hyper path (its client's buffer limit).
const RESPONSE_HEAD_LIMIT: usize = 64 * 1024;
/// Bodies with at least this much left after the first read move socket to socket through a pipe
/// (`splice`), never entering user space: at 1 MiB most of a proxy's time is copying.
#[cfg(target_os = "linux")]
const SPLICE_THRESHOLD: u64 = 64 * 1024;
/// Headers per message, as in hyper.
const MAX_HEADERS: usize = 100;
/// Names listed in one `Connection` header that the relay strips; more go to the hyper path.
const MAX_CONNECTION_TOKENS: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle upstream connections are kept this long, and at most this many per target.
const POOL_IDLE: Duration = Duration::from_secs(90);
const POOL_PER_TARGET: usize = 128;
/// How often the whole pool is swept for expired and closed connections (on the next return to it).
const POOL_SWEEP: Duration = Duration::from_secs(10);
/// An error page fetched from `--error-target` is sent whole; larger ones are cut to this.
const ERROR_PAGE_LIMIT: usize = 1024 * 1024;

/// Headers that describe one hop (RFC 9110 §7.6.1), never forwarded in either direction. The relay passes
/// `Transfer-Encoding` and `Content-Length` of responses through, since it passes their bodies through as
/// framed.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// How a relayed connection ended.
pub(crate) enum Relayed<I> {
    /// The connection is finished (closed by either side, timed out, or failed).
    Closed,
    /// The hyper path must serve the rest of the connection, starting with these unconsumed bytes.
    HandOff(Rewound<I>),
}

/// What the relay needs from the connection's surroundings.
pub(crate) struct RelayContext<'a> {
    pub(crate) state: &'a ForwardState,
    pub(crate) conn: &'a ConnInfo,
    /// How long a client may take to send a request head, counted from the end of the previous response
    /// (so it is also the keep-alive timeout).
    pub(crate) head_timeout: Duration,
    /// Cancelled at shutdown: idle connections close, busy ones after their current response.
    pub(crate) stop: &'a CancellationToken,
}

/// A client connection the relay can serve: any byte stream, and a plain TCP socket is also offered for
/// zero-copy bodies.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin {
    fn as_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl ClientIo for TcpStream {
    fn as_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {}

/// Serves `client` until it closes or needs the hyper path.
pub(crate) async fn relay<I: ClientIo>(mut client: I, cx: RelayContext<'_>) -> Relayed<I> {
    let mut inbuf = ReadBuffer::new(CLIENT_BUFFER);
    let mut held: Option<Upstream> = None;
    let outcome = loop {
        let mut deadline = tokio::time::Instant::now() + cx.head_timeout;
        let mut waiting_for_body = false;
        let plan = loop {
            if !inbuf.is_empty() {
                match prepare(&cx, inbuf.data()) {
                    Prepared::Forward(plan) => break Ok(plan),
                    Prepared::HandOff => break Err(true),
                    Prepared::NeedBody if !waiting_for_body => {
                        // A slow link may take a while for even a small body; the head was on time.
                        waiting_for_body = true;
                        deadline = tokio::time::Instant::now() + cx.head_timeout.max(BODY_TIMEOUT);
                    }
                    Prepared::NeedHead | Prepared::NeedBody => {}
                }
                if inbuf.len() >= HEAD_LIMIT + BODY_LIMIT {
                    // Cannot happen within the limits `prepare` checks; never read into a full buffer.
                    break Err(true);
                }
            }
            let read = if inbuf.is_empty() {
                tokio::select! {
                    biased;
                    read = tokio::time::timeout_at(deadline, inbuf.read_from(&mut client)) => read,
                    () = cx.stop.cancelled() => Ok(Ok(0)),
                }
            } else {
                tokio::time::timeout_at(deadline, inbuf.read_from(&mut client)).await
            };
            match read {
                Ok(Ok(read)) if read > 0 => {}
                // Closed, failed or timed out (also partway through a request): nothing to answer.
                _ => break Err(false),
            }
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(true) => {
                break Relayed::HandOff(Rewound::new(Bytes::copy_from_slice(inbuf.data()), client));
            }
            Err(false) => break Relayed::Closed,
        };
        match exchange(&mut client, &cx, &plan, &mut held).await {
            Exchanged::KeepAlive => inbuf.consume(plan.request_len),
            Exchanged::Close => break Relayed::Closed,
            Exchanged::HandOff => {
                break Relayed::HandOff(Rewound::new(Bytes::copy_from_slice(inbuf.data()), client));
            }
        }
        if cx.stop.is_cancelled() {
            break Relayed::Closed;
        }
    };
    if let Some(upstream) = held {
        cx.state.relay_pool.put(upstream);
    }
    outcome
}

/// A request ready to go upstream.
pub(crate) struct Plan {
    /// The rewritten head followed by the body.
    pub(crate) upstream_request: Vec<u8>,
    /// Head and body length in the client's buffer.
    pub(crate) request_len: usize,
    pub(crate) body_len: usize,
    /// The original request target, for error pages.
    pub(crate) original_target: String,
    pub(crate) route: Arc<Route>,
    pub(crate) authority: Authority,
    pub(crate) head_method: bool,
    pub(crate) idempotent: bool,
    pub(crate) client_close: bool,
}

pub(crate) enum Prepared {
    Forward(Plan),
    /// The head is incomplete.
    NeedHead,
    /// The head is complete; part of its (small) body is still to come.
    NeedBody,
    HandOff,
}

/// Parses the request at the start of `data` and, if the relay takes it, builds what goes upstream.
pub(crate) fn prepare(cx: &RelayContext<'_>, data: &[u8]) -> Prepared {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if data.len() < HEAD_LIMIT => return Prepared::NeedHead,
        Ok(httparse::Status::Partial) | Err(_) => return Prepared::HandOff,
    };
    let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version)
    else {
        return Prepared::HandOff;
    };
    if head_len > HEAD_LIMIT
        || method == "CONNECT"
        || !target.starts_with('/')
        || target == HEALTH_PATH
    {
        return Prepared::HandOff;
    }

    let mut host = None;
    let mut content_length = None;
    let mut connection = ConnectionTokens::default();
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Prepared::HandOff;
            }
            host = Some(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            match parse_content_length(header.value) {
                Some(length) if content_length.is_none() => content_length = Some(length),
                _ => return Prepared::HandOff,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if !connection.add(header.value) {
                return Prepared::HandOff;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Prepared::HandOff;
        }
    }
    let Some(host) = host.and_then(|host| std::str::from_utf8(host).ok()) else {
        return Prepared::HandOff;
    };
    let body_len = content_length.unwrap_or(0);
    if body_len > BODY_LIMIT as u64 {
        return Prepared::HandOff;
    }
    let body_len = body_len as usize;
    if data.len() < head_len + body_len {
        return Prepared::NeedBody;
    }

    let state = cx.state;
    let raw_path = target.split_once('?').map_or(target, |(path, _)| path);
    let Some(route) = forward::route_for(&state.routes, raw_path, host.split(':').next()) else {
        return Prepared::HandOff;
    };
    let Some(upstream) = route.target().filter(|t| t.scheme == Scheme::HTTP) else {
        return Prepared::HandOff;
    };
    let path_and_query = forward::upstream_path_and_query(state, &route, upstream, target);

    let mut out = Vec::with_capacity(head_len + body_len + 256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let options = &state.options;
    let x_forward = options.x_forward;
    let mut forwarded_for = None;
    let mut forwarded_port = None;
    let mut forwarded_proto = None;
    let mut has_forwarded_host = false;
    for header in request.headers.iter() {
        let name = header.name;
        // The length is written below from what is actually sent, whatever `Connection` lists: a
        // request whose body the upstream cannot delimit would be read as a second request.
        if is_hop_by_hop(name)
            || connection.lists(name)
            || name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        if x_forward {
            let slot = if name.eq_ignore_ascii_case("x-forwarded-for") {
                Some(&mut forwarded_for)
            } else if name.eq_ignore_ascii_case("x-forwarded-port") {
                Some(&mut forwarded_port)
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                Some(&mut forwarded_proto)
            } else {
                has_forwarded_host |= name.eq_ignore_ascii_case("x-forwarded-host");
                None
            };
            if let Some(slot) = slot {
                // Like the hyper path: the first value gets ours appended, repeats are dropped.
                slot.get_or_insert(header.value);
                continue;
            }
        }
        if options
            .custom_headers
            .iter()
            .any(|(custom, _)| name.eq_ignore_ascii_case(custom.as_str()))
        {
            continue;
        }
        push_header(&mut out, name.as_bytes(), header.value);
    }
    if x_forward {
        let port = host
            .rsplit_once(':')
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(if cx.conn.encrypted { "443" } else { "80" });
        let proto = if cx.conn.encrypted { "https" } else { "http" };
        push_forwarded(
            &mut out,
            b"x-forwarded-for",
            forwarded_for,
            cx.conn.peer_ip.as_bytes(),
        );
        push_forwarded(
            &mut out,
            b"x-forwarded-port",
            forwarded_port,
            port.as_bytes(),
        );
        push_forwarded(
            &mut out,
            b"x-forwarded-proto",
            forwarded_proto,
            proto.as_bytes(),
        );
        if !has_forwarded_host {
            push_header(&mut out, b"x-forwarded-host", host.as_bytes());
        }
    }
    for (name, value) in &options.custom_headers {
        push_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if content_length.is_some() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data[head_len..head_len + body_len]);

    let authority = upstream.authority.clone();
    Prepared::Forward(Plan {
        upstream_request: out,
        request_len: head_len + body_len,
        body_len,
        original_target: target.to_owned(),
        authority,
        route,
        head_method: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        client_close: connection.close,
    })
}

/// `Content-Length`: digits only (no sign, no spaces, no lists), as strict as hyper.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, digit| {
        n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An `X-Forwarded-*` header: the client's value with ours appended, as http-proxy does.
fn push_forwarded(out: &mut Vec<u8>, name: &[u8], existing: Option<&[u8]>, ours: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    if let Some(existing) = existing.filter(|value| !value.is_empty()) {
        out.extend_from_slice(existing);
        out.push(b',');
    }
    out.extend_from_slice(ours);
    out.extend_from_slice(b"\r\n");
}

/// The tokens of `Connection` headers: `close`, and other names whose headers are hop-by-hop.
#[derive(Default)]
struct ConnectionTokens<'h> {
    listed: [&'h [u8]; MAX_CONNECTION_TOKENS],
    count: usize,
    close: bool,
}

impl<'h> ConnectionTokens<'h> {
    /// Adds one header's tokens; `false` if there are more than we keep.
    fn add(&mut self, value: &'h [u8]) -> bool {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                // Already hop-by-hop.
            } else if self.count == MAX_CONNECTION_TOKENS {
                return false;
            } else {
                self.listed[self.count] = token;
                self.count += 1;
            }
        }
        true
    }

    fn lists(&self, name: &str) -> bool {
        self.listed[..self.count]
            .iter()
            .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
    }
}

enum Exchanged {
    /// The response was sent whole; the client may send another request.
    KeepAlive,
    /// The client connection must close (asked to, response framed by close, or a failure).
    Close,
    /// Nothing was sent to the client; the hyper path takes the request from the start.
    HandOff,
}

/// Sends one request upstream and its response back to the client.
async fn exchange<I: ClientIo>(
    client: &mut I,
    cx: &RelayContext<'_>,
    plan: &Plan,
    held: &mut Option<Upstream>,
) -> Exchanged {
    let state = cx.state;
    let mut candidate = match held.take() {
        Some(upstream) if upstream.authority == plan.authority => Some(upstream),
        Some(other) => {
            state.relay_pool.put(other);
            state.relay_pool.take(&plan.authority)
        }
        None => state.relay_pool.take(&plan.authority),
    };
    let mut retried = false;
    let (mut upstream, response) = loop {
        let mut upstream = match candidate.take().filter(Upstream::looks_open) {
            Some(upstream) => upstream,
            None => match Upstream::connect(&plan.authority).await {
                Ok(upstream) => upstream,
                Err(error) => {
                    // The hyper path tries again and answers with the error page.
                    tracing::debug!(target_authority = %plan.authority, error = %ErrorChain(&error), "relay cannot connect; handing over");
                    return Exchanged::HandOff;
                }
            },
        };
        if let Err(error) = upstream.stream.write_all(&plan.upstream_request).await {
            if upstream.reused && !retried {
                retried = true;
                continue;
            }
            tracing::debug!(error = %ErrorChain(&error), "relay cannot send upstream; handing over");
            return Exchanged::HandOff;
        }
        let mut response = ResponseBuffer::new();
        let outcome = match state.options.proxy_timeout {
            Some(limit) => tokio::time::timeout(limit, response.read_head(&mut upstream.stream))
                .await
                .unwrap_or(Err(HeadError::TimedOut)),
            None => response.read_head(&mut upstream.stream).await,
        };
        match outcome {
            Ok(()) => break (upstream, response),
            // A reused connection the target closed just as we sent: safe to send again on a new one
            // for methods that may be repeated.
            Err(HeadError::ClosedEarly) if upstream.reused && plan.idempotent && !retried => {
                retried = true;
            }
            Err(error) => {
                let kind = match error {
                    HeadError::TimedOut => UpstreamErrorKind::Timeout,
                    _ => UpstreamErrorKind::Other,
                };
                state.metrics.count_upstream_error(kind);
                tracing::warn!(route = plan.route.path(), path = %plan.original_target, error = error.describe(), "upstream request failed");
                // As on the hyper path: an upstream may not switch protocols unasked.
                let status = match error {
                    HeadError::UnaskedSwitch => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                write_error(client, cx, status, plan).await;
                return Exchanged::Close;
            }
        }
    };

    let activity = plan.route.activity();
    if plan.body_len > 0 {
        state
            .metrics
            .bytes_in
            .fetch_add(plan.body_len as u64, Ordering::Relaxed);
        activity.touch();
    }
    let head = match response.client_head(
        plan.head_method,
        plan.client_close || cx.stop.is_cancelled(),
    ) {
        Ok(head) => head,
        Err(reason) => {
            state.metrics.count_upstream_error(UpstreamErrorKind::Other);
            tracing::warn!(route = plan.route.path(), path = %plan.original_target, reason, "upstream answered with an invalid response");
            write_error(client, cx, StatusCode::SERVICE_UNAVAILABLE, plan).await;
            return Exchanged::Close;
        }
    };
    state.metrics.requests_web.fetch_add(1, Ordering::Relaxed);
    state.metrics.count_response(head.status);
    // Like CHP, only successful answers count as activity (also while their bodies stream); a flood
    // of errors must not keep a server alive.
    let body_activity = (head.status.as_u16() < 300).then_some(&**activity);
    if let Some(activity) = body_activity {
        activity.touch();
    }
    let body = response.body_bytes(head.len);
    let mut framing = head.framing;
    let (first, rest) = match framing.take(body) {
        Ok(split) => split,
        Err(()) => return Exchanged::Close,
    };
    if write_two(client, &head.bytes, first).await.is_err() {
        return Exchanged::Close;
    }
    let mut sent = first.len() as u64;
    let mut upstream_reusable = head.upstream_keep_alive && rest.is_empty();
    #[cfg(target_os = "linux")]
    if let Framing::Length(remaining) = framing
        && remaining >= SPLICE_THRESHOLD
        && let Some(client_tcp) = client.as_tcp()
    {
        use crate::splice::{SpliceError, forward_exact};
        let mut moved = 0;
        match forward_exact(
            &upstream.stream,
            client_tcp,
            remaining,
            body_activity,
            &mut moved,
        )
        .await
        {
            Ok(()) => framing = Framing::Length(0),
            // Nothing moved: copy through user space below.
            Err(SpliceError::Unsupported) => {}
            Err(failure) => {
                if matches!(failure, SpliceError::Upstream(_)) {
                    state.metrics.count_upstream_error(UpstreamErrorKind::Other);
                }
                tracing::debug!(route = plan.route.path(), error = %ErrorChain(&failure), "response body cut short");
                state
                    .metrics
                    .bytes_out
                    .fetch_add(sent + moved, Ordering::Relaxed);
                return Exchanged::Close;
            }
        }
        sent += moved;
    }
    if !framing.is_done() {
        let mut buffer = response.into_stream_buffer();
        loop {
            buffer.clear();
            let read = match upstream.stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) if framing.is_close_delimited() => break,
                Ok(0) | Err(_) => {
                    // Cut short: the client must not wait for the rest.
                    state.metrics.count_upstream_error(UpstreamErrorKind::Other);
                    state.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
                    return Exchanged::Close;
                }
                Ok(read) => read,
            };
            let (part, extra) = match framing.take(&buffer[..read]) {
                Ok(split) => split,
                Err(()) => {
                    state.metrics.count_upstream_error(UpstreamErrorKind::Other);
                    state.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
                    return Exchanged::Close;
                }
            };
            if let Some(activity) = body_activity {
                activity.touch();
            }
            if client.write_all(part).await.is_err() {
                state.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
                return Exchanged::Close;
            }
            sent += part.len() as u64;
            if framing.is_done() {
                upstream_reusable &= extra.is_empty();
                break;
            }
        }
    }
    state.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
    if upstream_reusable && !framing.is_close_delimited() {
        upstream.reused = true;
        *held = Some(upstream);
    }
    if head.client_keep_alive && !framing.is_close_delimited() {
        Exchanged::KeepAlive
    } else {
        Exchanged::Close
    }
}

/// Writes the hyper path's answer for `status` (with the `--error-target` page if there is one) and
/// asks the client to close.
async fn write_error<I>(client: &mut I, cx: &RelayContext<'_>, status: StatusCode, plan: &Plan)
where
    I: AsyncWrite + Unpin,
{
    let original = plan
        .original_target
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let response = forward::error_response(cx.state, status, &original, false).await;
    cx.state
        .metrics
        .requests_web
        .fetch_add(1, Ordering::Relaxed);
    cx.state.metrics.count_response(response.status());
    let (parts, body) = response.into_parts();
    let body = match Limited::new(body, ERROR_PAGE_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::CONNECTION {
            push_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    push_header(
        &mut head,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    push_header(&mut head, b"connection", b"close");
    head.extend_from_slice(b"\r\n");
    // An answer to HEAD states the length of the page but has no body.
    let body = if plan.head_method { &[][..] } else { &body[..] };
    let _ = write_two(client, &head, body).await;
}

/// Writes `first` then `second`, in one system call when the stream takes both.
async fn write_two<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut first: &[u8],
    mut second: &[u8],
) -> io::Result<()> {
    while !first.is_empty() {
        let written = writer
            .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if written >= first.len() {
            second = &second[written - first.len()..];
            first = &[];
        } else {
            first = &first[written..];
        }
    }
    writer.write_all(second).await
}

/// The client connection's read buffer: `data[start..end]` is unread.
struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    fn new(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.bytes.len() > CLIENT_BUFFER {
                // A long head or body made it grow; idle connections go back to the small size.
                self.bytes = vec![0; CLIENT_BUFFER];
            }
        }
    }

    /// Reads more, making room first (moving unread bytes to the front, or growing).
    async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<usize> {
        if self.end == self.bytes.len() {
            if self.start > 0 {
                self.bytes.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.bytes.len() * 2).min(HEAD_LIMIT + BODY_LIMIT);
                self.bytes.resize(grown, 0);
            }
        }
        let read = reader.read(&mut self.bytes[self.end..]).await?;
        self.end += read;
        Ok(read)
    }
}

#[derive(Debug)]
enum HeadError {
    /// The connection closed (or reset) before any byte of a response.
    ClosedEarly,
    /// It closed or failed partway through the head.
    Broken,
    /// A 101 answer to a request that asked for no upgrade.
    UnaskedSwitch,
    Invalid,
    TooLong,
    TimedOut,
}

impl HeadError {
    fn describe(&self) -> &'static str {
        match self {
            HeadError::ClosedEarly => "connection closed before the response",
            HeadError::Broken => "connection closed during the response head",
            HeadError::Invalid => "invalid response head",
            HeadError::UnaskedSwitch => "switched protocols unasked",
            HeadError::TooLong => "response head too long",
            HeadError::TimedOut => "timed out waiting for the response",
        }
    }
}

/// An upstream response: its head, then whatever body bytes arrived with it.
struct ResponseBuffer {
    /// Read into spare capacity, so nothing is zeroed per request.
    bytes: Vec<u8>,
    /// Length of interim (1xx) responses at the front, which are skipped.
    skipped: usize,
}

/// The head to send the client and how the body is framed.
struct ClientHead {
    bytes: Vec<u8>,
    status: StatusCode,
    /// Length of the upstream head (from the start of the body bytes in the buffer).
    len: usize,
    framing: Framing,
    upstream_keep_alive: bool,
    client_keep_alive: bool,
}

impl ResponseBuffer {
    fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(RESPONSE_BUFFER),
            skipped: 0,
        }
    }

    /// Reads until a complete final (non-1xx) response head is buffered.
    async fn read_head(&mut self, upstream: &mut TcpStream) -> Result<(), HeadError> {
        loop {
            if self.bytes.len() > self.skipped {
                match self.parse_status()? {
                    Some(None) => return Ok(()),
                    Some(Some(interim_len)) => {
                        self.skipped += interim_len;
                        continue;
                    }
                    None => {}
                }
            }
            if self.bytes.len() == self.bytes.capacity() {
                if self.bytes.len() >= RESPONSE_HEAD_LIMIT {
                    return Err(HeadError::TooLong);
                }
                self.bytes.reserve(self.bytes.len());
            }
            match upstream.read_buf(&mut self.bytes).await {
                Ok(0) | Err(_) if self.bytes.is_empty() => return Err(HeadError::ClosedEarly),
                Ok(0) | Err(_) => return Err(HeadError::Broken),
                Ok(_) => {}
            }
        }
    }

    /// `Some(None)` for a complete final head, `Some(Some(len))` for a complete interim one, `None` if
    /// incomplete.
    fn parse_status(&self) -> Result<Option<Option<usize>>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.bytes[self.skipped..]) {
            Ok(httparse::Status::Complete(len)) => match response.code {
                Some(101) => Err(HeadError::UnaskedSwitch),
                Some(100..=199) => Ok(Some(Some(len))),
                _ => Ok(Some(None)),
            },
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(HeadError::Invalid),
        }
    }

    /// Builds the client's head: the status, the upstream's headers minus hop-by-hop ones, and
    /// `connection: close` when the client connection ends after this response.
    fn client_head(
        &self,
        head_method: bool,
        client_close: bool,
    ) -> Result<ClientHead, &'static str> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.bytes[self.skipped..]) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return Err("unparsable head"),
        };
        let code = response.code.ok_or("no status")?;
        let status = StatusCode::from_u16(code).map_err(|_| "invalid status")?;
        let mut connection = ConnectionTokens::default();
        let mut content_length = None;
        let mut transfer_encoding: Option<&[u8]> = None;
        for header in response.headers.iter() {
            if header.name.eq_ignore_ascii_case("connection") {
                // Names beyond what we track stay; they are harmless to a client.
                let _ = connection.add(header.value);
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let length = parse_content_length(header.value).ok_or("invalid content-length")?;
                if content_length.is_some_and(|seen| seen != length) {
                    return Err("conflicting content-length");
                }
                content_length = Some(length);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                if transfer_encoding.is_some() {
                    return Err("repeated transfer-encoding");
                }
                transfer_encoding = Some(header.value);
            }
        }
        let bodiless = head_method || code == 204 || code == 304;
        let framing = if bodiless {
            Framing::Length(0)
        } else if let Some(coding) = transfer_encoding {
            let last = coding.rsplit(|&b| b == b',').next().unwrap_or_default();
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked(ChunkedScanner::default())
            } else {
                Framing::UntilClose
            }
        } else if let Some(length) = content_length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        let upstream_keep_alive = response.version == Some(1) && !connection.close;
        let client_keep_alive = !client_close && !matches!(framing, Framing::UntilClose);

        let mut bytes = Vec::with_capacity(len + 32);
        bytes.extend_from_slice(b"HTTP/1.1 ");
        bytes.extend_from_slice(status.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(response.reason.unwrap_or("").as_bytes());
        bytes.extend_from_slice(b"\r\n");
        for header in response.headers.iter() {
            let name = header.name;
            // The framing headers stay whatever `Connection` lists: the body is passed on as framed.
            let framing_header = name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding");
            if !framing_header && (is_hop_by_hop(name) || connection.lists(name)) {
                continue;
            }
            // With both, the body is chunked (RFC 9112 §6.3); the length would mislead the client.
            if transfer_encoding.is_some() && name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            push_header(&mut bytes, name.as_bytes(), header.value);
        }
        if !client_keep_alive {
            bytes.extend_from_slice(b"connection: close\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        Ok(ClientHead {
            bytes,
            status,
            len: self.skipped + len,
            framing,
            upstream_keep_alive,
            client_keep_alive,
        })
    }

    fn body_bytes(&self, head_len: usize) -> &[u8] {
        &self.bytes[head_len..]
    }

    /// The buffer to stream the rest of the body through.
    fn into_stream_buffer(mut self) -> Vec<u8> {
        self.bytes.clear();
        self.bytes.reserve(STREAM_BUFFER);
        self.bytes
    }
}

/// How the end of a response body is found.
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(ChunkedScanner),
    /// Until the upstream closes; the client connection closes too.
    UntilClose,
}

impl Framing {
    /// Splits `bytes` into the part that belongs to the body and what is left after its end.
    fn take<'b>(&mut self, bytes: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), ()> {
        match self {
            Framing::Length(remaining) => {
                let part = bytes
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= part as u64;
                Ok(bytes.split_at(part))
            }
            Framing::Chunked(scanner) => match scanner.scan(bytes) {
                Ok(Some(end)) => Ok(bytes.split_at(end)),
                Ok(None) => Ok((bytes, &[])),
                Err(InvalidChunk) => Err(()),
            },
            Framing::UntilClose => Ok((bytes, &[])),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Framing::Length(remaining) => *remaining == 0,
            Framing::Chunked(scanner) => scanner.is_done(),
            Framing::UntilClose => false,
        }
    }

    fn is_close_delimited(&self) -> bool {
        matches!(self, Framing::UntilClose)
    }
}

/// Invalid chunked framing.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidChunk;

/// Finds the end of a chunked body (RFC 9112 §7.1) while its bytes pass through unchanged, so a
/// response's framing is checked without decoding it.
#[derive(Debug, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// Data bytes left in the current chunk.
    remaining: u64,
    /// Length of the current size line or trailer section, bounded.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Longest chunk-size line (with extensions) or trailer section accepted.
const CHUNK_LINE_LIMIT: usize = 16 * 1024;

impl ChunkedScanner {
    /// Scans the next bytes of the body. `Ok(Some(n))`: the body ended after the first `n` bytes;
    /// `Ok(None)`: all of them belong to it and more follow.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<Option<usize>, InvalidChunk> {
        let mut at = 0;
        while at < bytes.len() {
            if self.state == ChunkState::Data {
                let take =
                    (bytes.len() - at).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= take as u64;
                at += take;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let byte = bytes[at];
            at += 1;
            self.line += 1;
            if self.line > CHUNK_LINE_LIMIT {
                return Err(InvalidChunk);
            }
            self.state = match (self.state, byte) {
                (ChunkState::SizeStart | ChunkState::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(digit))
                        .ok_or(InvalidChunk)?;
                    ChunkState::Size
                }
                (ChunkState::Size | ChunkState::SizeSpace, b' ' | b'\t') => ChunkState::SizeSpace,
                (ChunkState::Size | ChunkState::SizeSpace, b';') => ChunkState::Extension,
                (ChunkState::Size | ChunkState::SizeSpace | ChunkState::Extension, b'\r') => {
                    ChunkState::SizeLf
                }
                (ChunkState::Extension, b'\n') => return Err(InvalidChunk),
                (ChunkState::Extension, _) => ChunkState::Extension,
                (ChunkState::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.remaining == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => {
                    self.line = 0;
                    ChunkState::SizeStart
                }
                (ChunkState::TrailerStart, b'\r') => ChunkState::EndLf,
                (ChunkState::TrailerStart | ChunkState::Trailer, b'\n') => {
                    return Err(InvalidChunk);
                }
                (ChunkState::Trailer, b'\r') => ChunkState::TrailerLf,
                (ChunkState::TrailerStart | ChunkState::Trailer, _) => ChunkState::Trailer,
                (ChunkState::TrailerLf, b'\n') => ChunkState::TrailerStart,
                (ChunkState::EndLf, b'\n') => {
                    self.state = ChunkState::Done;
                    return Ok(Some(at));
                }
                _ => return Err(InvalidChunk),
            };
        }
        Ok(None)
    }

    /// Whether the last chunk and the trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// A connection to a target.
struct Upstream {
    authority: Authority,
    stream: TcpStream,
    /// It carried a request before, so it may have been closed by the target since.
    reused: bool,
}

impl Upstream {
    async fn connect(authority: &Authority) -> io::Result<Upstream> {
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Upstream {
            authority: authority.clone(),
            stream,
            reused: false,
        })
    }

    fn looks_open(&self) -> bool {
        Self::is_open(&self.stream)
    }

    /// False if the target closed it or sent something unasked. The check needs no system call while
    /// the socket has not become readable.
    fn is_open(stream: &TcpStream) -> bool {
        let mut probe = [0u8; 1];
        matches!(stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Idle upstream connections, most recently used first out.
#[derive(Debug, Default)]
pub(crate) struct UpstreamPool {
    idle: Mutex<IdleConnections>,
}

#[derive(Debug, Default)]
struct IdleConnections {
    by_target: HashMap<Authority, Vec<(TcpStream, Instant)>>,
    last_sweep: Option<Instant>,
}

impl UpstreamPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleConnections> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, authority: &Authority) -> Option<Upstream> {
        let mut idle = self.lock();
        let connections = idle.by_target.get_mut(authority)?;
        while let Some((stream, since)) = connections.pop() {
            if since.elapsed() < POOL_IDLE {
                return Some(Upstream {
                    authority: authority.clone(),
                    stream,
                    reused: true,
                });
            }
        }
        idle.by_target.remove(authority);
        None
    }

    fn put(&self, upstream: Upstream) {
        if !upstream.looks_open() {
            return;
        }
        let mut idle = self.lock();
        if idle
            .last_sweep
            .is_none_or(|swept| swept.elapsed() >= POOL_SWEEP)
        {
            idle.sweep();
        }
        let connections = idle.by_target.entry(upstream.authority).or_default();
        // The oldest are at the front: drop the oldest when full.
        if connections.len() == POOL_PER_TARGET {
            connections.remove(0);
        }
        connections.push((upstream.stream, Instant::now()));
    }

    /// The number of idle connections kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_target.values().map(Vec::len).sum()
    }
}

impl IdleConnections {
    /// Closes connections that expired or that their target closed, and forgets targets without any:
    /// targets come and go with users' servers, and their sockets must not pile up.
    fn sweep(&mut self) {
        self.by_target.retain(|_, connections| {
            connections
                .retain(|(stream, since)| since.elapsed() < POOL_IDLE && Upstream::is_open(stream));
            !connections.is_empty()
        });
        self.last_sweep = Some(Instant::now());
    }
}

/// A connection with bytes already read from it put back in front, for the hyper path.
pub(crate) struct Rewound<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewound<I> {
    pub(crate) fn new(prefix: Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewound<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let count = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..count]);
            self.prefix.advance(count);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewound<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(body: &[u8]) -> Result<Option<usize>, InvalidChunk> {
        ChunkedScanner::default().scan(body)
    }

    #[test]
    fn chunked_scanner_finds_the_end_of_a_body_split_anywhere() {
        let body = b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(scan_all(body), Ok(Some(body.len())));
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let first = scanner.scan(&body[..split]).unwrap();
            assert_eq!(first, None, "split at {split}");
            assert_eq!(scanner.scan(&body[split..]), Ok(Some(body.len() - split)));
        }
    }

    #[test]
    fn chunked_scanner_stops_at_the_end_and_leaves_what_follows() {
        let body = b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert_eq!(scan_all(body), Ok(Some(13)));
    }

    #[test]
    fn chunked_scanner_rejects_broken_framing() {
        for broken in [
            &b"zz\r\nhello\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"5;ext\nhello",
            b"0\r\nTrailer\n",
            b"11111111111111111\r\n",
            b"-5\r\n",
        ] {
            assert_eq!(scan_all(broken), Err(InvalidChunk), "{broken:?}");
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"1024"), Some(1024));
        for bad in [
            &b""[..],
            b"+5",
            b"5 ",
            b"5,5",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_pool_lets_go_of_connections_their_target_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = UpstreamPool::default();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let stream = TcpStream::connect(addr).await.unwrap();
            peers.push(listener.accept().await.unwrap().0);
            pool.put(Upstream {
                authority: authority.clone(),
                stream,
                reused: true,
            });
        }
        assert_eq!(pool.len(), 3);
        // Two targets hang up; the next sweep closes our ends.
        peers.truncate(1);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            pool.lock().sweep();
            if pool.len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "closed connections stayed in the pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.take(&authority).is_some());
        assert!(pool.take(&authority).is_none());
    }

    #[test]
    fn connection_tokens_name_hop_by_hop_headers_and_close() {
        let mut tokens = ConnectionTokens::default();
        assert!(tokens.add(b"keep-alive, X-Drop-Me ,close"));
        assert!(tokens.close);
        assert!(tokens.lists("x-drop-me"));
        assert!(!tokens.lists("x-keep-me"));
        let mut many = ConnectionTokens::default();
        assert!(!many.add(b"a,b,c,d,e,f,g,h,i"));
    }
}
