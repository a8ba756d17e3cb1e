//! Large bodies stream through the proxy in both directions without being buffered.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hubfleet_proxy::ProxyConfig;
use hyper::body::Incoming;

use crate::support::{TestProxy, http_client, upstream};

const CHUNK: usize = 64 * 1024;
const TOTAL: u64 = 256 * 1024 * 1024;

/// Peak resident memory of this test process so far, from `/proc/self/status`.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_256_mib_body_streams_through_and_back() {
    // The upstream echoes the request body as it arrives (a streamed response of a streamed request).
    let echo =
        upstream(|req: Request<Incoming>| async move { Response::new(req.into_body().boxed()) })
            .await;
    let proxy = TestProxy::start(ProxyConfig::default()).await;
    proxy.route("/upload", &format!("http://{echo}"));
    let peak_before = peak_rss_kib();

    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let response = http_client()
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        received += piece.unwrap().len() as u64;
    }
    assert_eq!(received, TOTAL);
    assert!(proxy.handle.metrics().bytes_in() >= TOTAL);
    assert!(proxy.handle.metrics().bytes_out() >= TOTAL);

    // If any hop buffered the body, the peak would grow by hundreds of MiB; streaming keeps it near flat.
    // (Other tests run in this process too, so allow generous headroom.)
    let growth_mib = peak_rss_kib().saturating_sub(peak_before) / 1024;
    assert!(
        growth_mib < 96,
        "peak RSS grew by {growth_mib} MiB while streaming 256 MiB"
    );
    proxy.stop().await;
}
