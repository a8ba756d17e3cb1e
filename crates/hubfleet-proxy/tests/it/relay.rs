//! The HTTP/1.1 relay (the fast path for ordinary requests) over raw loopback TCP: keep-alive connections
//! that switch targets, targets that drop connections or frame responses unusually, pipelining, and the
//! hand-over to the hyper path in the middle of a connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response};
use hubfleet_proxy::ProxyConfig;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{DEADLINE, TestProxy, echo_upstream, full, upstream, wait_until};

/// One response read off a client connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// A client connection that reads responses one at a time, keeping whatever follows.
struct RawClient {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connects"),
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, request: &[u8]) {
        self.stream
            .write_all(request)
            .await
            .expect("request written");
    }

    /// Reads more; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("proxy answers in time")
            .unwrap_or(0);
        self.pending.extend_from_slice(&chunk[..read]);
        read > 0
    }

    /// Reads a response head, leaving its body unread.
    async fn response_head(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "closed before a response head");
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end);
        RawResponse {
            status: head[9..12].parse().expect("status code"),
            head,
            body: Vec::new(),
        }
    }

    /// Reads one response framed by `Content-Length`, chunked encoding, or the end of the stream.
    async fn response(&mut self) -> RawResponse {
        let mut response = self.response_head().await;
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("content-length");
            while self.pending.len() < length {
                assert!(self.fill().await, "closed inside a body");
            }
            response.body = self.pending.drain(..length).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(at) = find(&self.pending, b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await, "closed inside a chunk size");
                };
                let size_text = String::from_utf8_lossy(&self.pending[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                self.pending.drain(..line_end + 2);
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        if let Some(at) = find(&self.pending, b"\r\n") {
                            self.pending.drain(..at + 2);
                            if at == 0 {
                                return response;
                            }
                            continue;
                        }
                        assert!(self.fill().await, "closed inside trailers");
                    }
                }
                while self.pending.len() < size + 2 {
                    assert!(self.fill().await, "closed inside a chunk");
                }
                response.body.extend(self.pending.drain(..size));
                self.pending.drain(..2);
            }
        } else if !(response.status == 204 || response.status == 304) {
            while self.fill().await {}
            response.body = std::mem::take(&mut self.pending);
        }
        response
    }

    /// True once the proxy has closed the connection (bounded by [`DEADLINE`]).
    async fn is_closed(&mut self) -> bool {
        !self.fill().await
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: hub.example.org\r\n\r\n").into_bytes()
}

/// An upstream answering `text` to every request.
async fn text_upstream(text: &'static str) -> SocketAddr {
    upstream(move |_req: Request<Incoming>| async move { Response::new(full(text)) }).await
}

/// A target written by hand: for each request head it receives, `answer` gives the bytes to send and
/// whether to close the connection afterwards. Counts accepted and closed connections.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn raw_upstream(answer: fn(&str) -> (Vec<u8>, bool)) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (accepted_count, closed_count) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted_count.fetch_add(1, Ordering::SeqCst);
            let closed_count = closed_count.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(head_end) = find(&pending, b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => pending.extend_from_slice(&chunk[..read]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
                    let body_len = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while pending.len() < head_end + 4 + body_len {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => pending.extend_from_slice(&chunk[..read]),
                        }
                    }
                    pending.drain(..(head_end + 4 + body_len).min(pending.len()));
                    let (bytes, close) = answer(&head);
                    if stream.write_all(&bytes).await.is_err() || close {
                        break;
                    }
                }
                drop(stream);
                closed_count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    RawUpstream {
        addr,
        accepted,
        closed,
    }
}

#[tokio::test]
async fn one_keep_alive_connection_reaches_only_the_target_of_each_request() {
    let alice = text_upstream("alice's server").await;
    let bob = text_upstream("bob's server").await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/user/alice", &format!("http://{alice}"));
    proxy.route("/user/bob", &format!("http://{bob}"));
    let mut client = RawClient::connect(proxy.public).await;
    for round in 0..3 {
        for (user, expected) in [("alice", "alice's server"), ("bob", "bob's server")] {
            client.send(&get(&format!("/user/{user}/api"))).await;
            let response = client.response().await;
            assert_eq!(response.status, 200, "round {round}, {user}: {response:?}");
            assert_eq!(response.body, expected.as_bytes(), "round {round}, {user}");
        }
    }
    // The connection last used Bob's target; once his route is gone it must not be used for him.
    assert!(proxy.handle.routes().remove("/user/bob"));
    client.send(&get("/user/bob/api")).await;
    let response = client.response().await;
    assert_eq!(response.status, 404, "{response:?}");
    assert_ne!(response.body, b"bob's server");
    proxy.stop().await;
}

#[tokio::test]
async fn a_target_that_drops_idle_connections_is_reconnected() {
    // Answers once per connection and hangs up without saying so (no `Connection: close`).
    let target = raw_upstream(|_head| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            true,
        )
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{}", target.addr));
    let mut client = RawClient::connect(proxy.public).await;
    for attempt in 1..=3 {
        client.send(&get("/again")).await;
        let response = client.response().await;
        assert_eq!(
            (response.status, &response.body[..]),
            (200, &b"ok"[..]),
            "GET {attempt}"
        );
    }
    // Once the target's close has arrived, even a request that must not be repeated goes to a new connection.
    let closed = target.closed.clone();
    wait_until("the target closed its connections", || {
        closed.load(Ordering::SeqCst) == 3
    })
    .await;
    client
        .send(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let response = client.response().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"ok"[..]),
        "POST"
    );
    assert_eq!(target.accepted.load(Ordering::SeqCst), 4);
    proxy.stop().await;
}

#[tokio::test]
async fn chunked_close_delimited_and_bodiless_responses_keep_their_framing() {
    let target = raw_upstream(|head| {
        let path = head.split(' ').nth(1).unwrap_or_default();
        match path {
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n\
                  5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
                    .to_vec(),
                false,
            ),
            "/head" => (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
                false,
            ),
            "/listed" => (
                b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\nContent-Length: 6\r\n\r\nlisted"
                    .to_vec(),
                false,
            ),
            "/no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
            "/interim" => (
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
                    .to_vec(),
                false,
            ),
            _ => (
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
                true,
            ),
        }
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{}", target.addr));
    let mut client = RawClient::connect(proxy.public).await;

    client.send(&get("/chunked")).await;
    let chunked = client.response().await;
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.body, b"hello, world");
    assert_eq!(chunked.header("content-length"), None, "{}", chunked.head);
    assert_eq!(chunked.header("keep-alive"), None, "{}", chunked.head);
    assert_eq!(chunked.header("connection"), None, "{}", chunked.head);

    client.send(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // A response to HEAD has no body, whatever its length says.
    let head = client.response_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1234"));

    // Framing headers survive a `Connection` that lists them, so the body stays delimited.
    client.send(&get("/listed")).await;
    let listed = client.response().await;
    assert_eq!(
        listed.header("content-length"),
        Some("6"),
        "{}",
        listed.head
    );
    assert_eq!(listed.body, b"listed");

    client.send(&get("/no-content")).await;
    assert_eq!(client.response().await.status, 204);

    client.send(&get("/interim")).await;
    let after_hints = client.response().await;
    assert_eq!(
        (after_hints.status, &after_hints.body[..]),
        (200, &b"final"[..])
    );

    // A body that ends when the target closes ends the client's connection too.
    client.send(&get("/until-close")).await;
    let close_delimited = client.response().await;
    assert_eq!(close_delimited.status, 200);
    assert_eq!(close_delimited.header("connection"), Some("close"));
    assert_eq!(close_delimited.body, b"until the end");
    assert!(client.is_closed().await);
    proxy.stop().await;
}

#[tokio::test]
async fn pipelined_requests_and_a_hand_over_mid_connection_are_answered_in_order() {
    let echo = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{echo}"));
    let mut client = RawClient::connect(proxy.public).await;
    // Relayed, relayed with a small body, then a body too large to relay (the hyper path takes over the
    // connection) and one more after it.
    let large_body = "x".repeat(100 * 1024);
    let mut requests = Vec::new();
    requests.extend_from_slice(&get("/first"));
    requests.extend_from_slice(b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    requests.extend_from_slice(
        format!(
            "POST /third HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{large_body}",
            large_body.len()
        )
        .as_bytes(),
    );
    requests.extend_from_slice(&get("/fourth"));
    client.send(&requests).await;
    for path in ["/first", "/second", "/third", "/fourth"] {
        let response = client.response().await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        let seen: serde_json::Value = serde_json::from_slice(&response.body).expect("echo JSON");
        assert_eq!(seen["uri"], path);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn an_invalid_response_from_the_target_is_a_503() {
    let target = raw_upstream(|_head| (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), true)).await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{}", target.addr));
    let mut client = RawClient::connect(proxy.public).await;
    client.send(&get("/broken")).await;
    let response = client.response().await;
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("hubfleet_proxy_upstream_errors_total{kind=\"other\"} 1"),
        "{}",
        proxy.handle.metrics_text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn large_bodies_arrive_intact_and_a_client_leaving_midway_harms_nothing() {
    const SIZE: usize = 8 * 1024 * 1024;
    // A pattern that does not repeat on any power-of-two boundary, so reordered or lost pieces show.
    let expected: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let body = bytes::Bytes::from(expected.clone());
    let target = upstream(move |_req: Request<Incoming>| {
        let body = body.clone();
        async move { Response::new(full(body)) }
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{target}"));

    let mut leaver = RawClient::connect(proxy.public).await;
    leaver.send(&get("/big")).await;
    assert!(leaver.fill().await);
    drop(leaver);

    let mut client = RawClient::connect(proxy.public).await;
    for round in 0..2 {
        client.send(&get("/big")).await;
        let response = client.response().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-length"), Some("8388608"));
        assert!(response.body == expected, "round {round}: body differs");
    }
    assert!(proxy.handle.metrics().bytes_out() >= 2 * SIZE as u64);
    proxy.stop().await;
}

#[tokio::test]
async fn a_response_head_longer_than_the_first_read_is_relayed_whole() {
    // A 40 KiB header (large cookies and policies happen) takes more than one read of the response.
    let target = raw_upstream(|_head| {
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Large: ".to_vec();
        response.extend(std::iter::repeat_n(b'v', 40 * 1024));
        response.extend_from_slice(b"\r\n\r\nbody");
        (response, false)
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{}", target.addr));
    let mut client = RawClient::connect(proxy.public).await;
    client.send(&get("/large-head")).await;
    let response = client.response().await;
    assert_eq!(response.status, 200, "{}", &response.head[..80]);
    assert_eq!(response.header("x-large").map(str::len), Some(40 * 1024));
    assert_eq!(response.body, b"body");
    proxy.stop().await;
}

#[tokio::test]
async fn a_long_download_keeps_its_route_active_while_it_streams() {
    use http_body_util::{BodyExt, StreamBody};
    const HALF: usize = 512 * 1024;
    let release = Arc::new(tokio::sync::Notify::new());
    let released = release.clone();
    // The second half of each body waits until the test has seen the first arrive.
    let target = upstream(move |req: Request<Incoming>| {
        let released = released.clone();
        async move {
            let chunked = req.uri().path() == "/chunked";
            let stream = futures_util::stream::unfold(0u8, move |part| {
                let released = released.clone();
                async move {
                    match part {
                        0 => Some((
                            Ok::<_, hyper::Error>(http_body::Frame::data(bytes::Bytes::from(
                                vec![b'a'; HALF],
                            ))),
                            1,
                        )),
                        1 => {
                            released.notified().await;
                            Some((
                                Ok(http_body::Frame::data(bytes::Bytes::from(vec![b'b'; HALF]))),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut response = Response::new(StreamBody::new(stream).boxed());
            if !chunked {
                response
                    .headers_mut()
                    .insert("content-length", (2 * HALF).into());
            }
            response
        }
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{target}"));
    let route = proxy.handle.routes().get("/").expect("route");
    for path in ["/with-length", "/chunked"] {
        let mut client = RawClient::connect(proxy.public).await;
        client.send(&get(path)).await;
        while client.pending.len() < HALF {
            assert!(client.fill().await, "{path}: closed early");
        }
        let during_first_half = route.activity().last();
        wait_until("the clock moves on", || {
            chrono::Utc::now() > during_first_half + chrono::Duration::milliseconds(5)
        })
        .await;
        release.notify_one();
        let response = client.response().await;
        assert_eq!(response.body.len(), 2 * HALF, "{path}");
        assert!(
            route.activity().last() > during_first_half,
            "{path}: the second half did not count as activity"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn https_clients_speaking_http1_are_relayed_with_their_scheme() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::generate_cert(dir.path(), "relay");
    let echo = echo_upstream().await;
    const SIZE: usize = 1024 * 1024;
    let big =
        upstream(|_req: Request<Incoming>| async move { Response::new(full(vec![b'z'; SIZE])) })
            .await;
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(hubfleet_proxy::TlsPaths::new(&cert, &key)),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/", &format!("http://{echo}"));
    proxy.route("/big", &format!("http://{big}"));
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", proxy.public)
        .http1_only()
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", proxy.public.port());
    for _ in 0..3 {
        let response = client.get(format!("{base}/echo")).send().await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_11);
        let seen: serde_json::Value = response.json().await.unwrap();
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
        assert_eq!(
            seen["headers"]["x-forwarded-port"],
            proxy.public.port().to_string()
        );
    }
    let body = client
        .get(format!("{base}/big"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), SIZE);
    assert!(body.iter().all(|&b| b == b'z'));
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_cannot_be_smuggled_as_a_request_by_listing_content_length_in_connection() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let target = upstream(move |req: Request<Incoming>| {
        recorded.lock().unwrap().push(req.uri().path().to_owned());
        async move { Response::new(full("ok")) }
    })
    .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/", &format!("http://{target}"));
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut request = format!(
        "POST /first HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    request.extend_from_slice(smuggled);
    let mut client = RawClient::connect(proxy.public).await;
    client.send(&request).await;
    assert_eq!(client.response().await.status, 200);
    client.send(&get("/after")).await;
    assert_eq!(client.response().await.status, 200);
    assert_eq!(*seen.lock().unwrap(), ["/first", "/after"]);
    proxy.stop().await;
}
