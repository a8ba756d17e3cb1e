//! Traffic counters kept in atomics and rendered in the OpenMetrics text format, which the hub
//! appends to its own `/hub/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The `Content-Type` of [`ProxyMetrics::metrics_text`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a request to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The TCP connection to the target could not be made.
    Connect,
    /// The target did not answer within `--proxy-timeout`.
    Timeout,
    /// The connection broke after it was made.
    Other,
}

/// Counters for the whole proxy. Every field is an atomic, so the request path never takes a lock for them.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub(crate) requests_web: AtomicU64,
    pub(crate) requests_ws: AtomicU64,
    pub(crate) websockets_over_http2: AtomicU64,
    pub(crate) requests_api: AtomicU64,
    pub(crate) responses_by_class: [AtomicU64; 5],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections_active: AtomicI64,
    pub(crate) websockets_active: AtomicI64,
    pub(crate) upstream_errors_connect: AtomicU64,
    pub(crate) upstream_errors_timeout: AtomicU64,
    pub(crate) upstream_errors_other: AtomicU64,
    pub(crate) tls_reloads_ok: AtomicU64,
    pub(crate) tls_reloads_failed: AtomicU64,
}

impl ProxyMetrics {
    pub(crate) fn count_response(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_upstream_error(&self, kind: UpstreamErrorKind) {
        let counter = match kind {
            UpstreamErrorKind::Connect => &self.upstream_errors_connect,
            UpstreamErrorKind::Timeout => &self.upstream_errors_timeout,
            UpstreamErrorKind::Other => &self.upstream_errors_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes received from clients (request bodies and WebSocket client-to-server traffic).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes sent to clients (response bodies and WebSocket server-to-client traffic).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Certificate reloads (SIGHUP or changed files) that failed, keeping the previous certificate.
    pub fn tls_reloads_failed(&self) -> u64 {
        self.tls_reloads_failed.load(Ordering::Relaxed)
    }

    /// Certificate reloads that put new files in use.
    pub fn tls_reloads_ok(&self) -> u64 {
        self.tls_reloads_ok.load(Ordering::Relaxed)
    }

    /// Open client connections on the public listener(s).
    pub fn connections_active(&self) -> i64 {
        self.connections_active.load(Ordering::Relaxed)
    }

    /// Open WebSocket (upgraded) tunnels.
    pub fn websockets_active(&self) -> i64 {
        self.websockets_active.load(Ordering::Relaxed)
    }

    /// All counters in the OpenMetrics text format ([`OPENMETRICS_CONTENT_TYPE`]), ending in `# EOF`.
    /// Prometheus' classic text parser reads it too.
    pub fn metrics_text(&self) -> String {
        let mut out = String::with_capacity(2048);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            // An OpenMetrics counter family is named without the `_total` of its samples.
            let family = name.strip_suffix("_total").unwrap_or(name);
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        counter(
            "hubfleet_proxy_requests_web_total",
            "HTTP requests received on the public port.",
            &[("", load(&self.requests_web))],
        );
        counter(
            "hubfleet_proxy_requests_ws_total",
            "Upgrade (WebSocket) requests received.",
            &[("", load(&self.requests_ws))],
        );
        counter(
            "hubfleet_proxy_websockets_http2_total",
            "WebSockets opened over HTTP/2 (RFC 8441 extended CONNECT) and tunnelled to HTTP/1.1.",
            &[("", load(&self.websockets_over_http2))],
        );
        counter(
            "hubfleet_proxy_requests_api_total",
            "Requests to the REST API.",
            &[("", load(&self.requests_api))],
        );
        let classes: Vec<(String, u64)> = (0..5)
            .map(|i| {
                (
                    format!("{{code=\"{}xx\"}}", i + 1),
                    load(&self.responses_by_class[i]),
                )
            })
            .collect();
        let class_samples: Vec<(&str, u64)> =
            classes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "hubfleet_proxy_responses_total",
            "Responses sent on the public port, by status class.",
            &class_samples,
        );
        counter(
            "hubfleet_proxy_bytes_in_total",
            "Body and tunnel bytes received from clients.",
            &[("", self.bytes_in())],
        );
        counter(
            "hubfleet_proxy_bytes_out_total",
            "Body and tunnel bytes sent to clients.",
            &[("", self.bytes_out())],
        );
        counter(
            "hubfleet_proxy_upstream_errors_total",
            "Failed requests to upstream targets, by kind.",
            &[
                ("{kind=\"connect\"}", load(&self.upstream_errors_connect)),
                ("{kind=\"timeout\"}", load(&self.upstream_errors_timeout)),
                ("{kind=\"other\"}", load(&self.upstream_errors_other)),
            ],
        );
        counter(
            "hubfleet_proxy_tls_reloads_total",
            "TLS certificate reloads, by outcome (a failed one keeps the previous certificate).",
            &[
                ("{outcome=\"ok\"}", self.tls_reloads_ok()),
                ("{outcome=\"failed\"}", self.tls_reloads_failed()),
            ],
        );
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "hubfleet_proxy_connections_active",
            "Open client connections.",
            self.connections_active(),
        );
        gauge(
            "hubfleet_proxy_websockets_active",
            "Open WebSocket tunnels.",
            self.websockets_active(),
        );
        out.push_str("# EOF\n");
        out
    }
}

/// Decrements a gauge when dropped, so early returns and panics cannot leak a count.
#[derive(Debug)]
pub(crate) struct GaugeGuard {
    metrics: Arc<ProxyMetrics>,
    gauge: fn(&ProxyMetrics) -> &AtomicI64,
}

impl GaugeGuard {
    pub(crate) fn enter(
        metrics: Arc<ProxyMetrics>,
        gauge: fn(&ProxyMetrics) -> &AtomicI64,
    ) -> Self {
        gauge(&metrics).fetch_add(1, Ordering::Relaxed);
        Self { metrics, gauge }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::Relaxed);
    }
}
