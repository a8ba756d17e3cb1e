//! Entry points for the fuzz targets in `fuzz/`; not a stable API.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::forward::{ConnInfo, ForwardOptions, ForwardState};
use crate::metrics::ProxyMetrics;
use crate::relay::{Prepared, RelayContext, prepare};
use crate::routes::RouteTable;
use crate::server::upstream_client;
use crate::tls::UpstreamTls;

pub use crate::relay::{ChunkedScanner, InvalidChunk};

/// What the relay makes of a client's bytes (see `relay::prepare`).
#[derive(Debug, PartialEq, Eq)]
pub enum RelayOutcome {
    NeedHead,
    NeedBody,
    HandOff,
    Forward {
        /// What would be written upstream: the rewritten head and the body.
        upstream_request: Vec<u8>,
        /// Bytes of `data` the request used.
        request_len: usize,
        body_len: usize,
    },
}

/// Runs the relay's request preparation on `data` against a fixed route table: `/` and `/user/alice`
/// (with a target prefix) on plain HTTP, `/secure` on HTTPS (always handed over).
pub fn relay_prepare(data: &[u8]) -> RelayOutcome {
    static STATE: OnceLock<ForwardState> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let routes = Arc::new(RouteTable::new(false));
        for (path, target) in [
            ("/", "http://127.0.0.1:1"),
            ("/user/alice", "http://127.0.0.1:2/prefix"),
            ("/secure", "https://127.0.0.1:3"),
        ] {
            let mut data = serde_json::Map::new();
            data.insert("target".into(), serde_json::Value::String(target.into()));
            routes.insert(path, data).expect("route inserts");
        }
        ForwardState {
            routes,
            metrics: Arc::new(ProxyMetrics::default()),
            client: upstream_client(&UpstreamTls::default()).expect("client builds"),
            relay_pool: Default::default(),
            options: ForwardOptions {
                x_forward: true,
                include_prefix: true,
                prepend_path: true,
                error_target: None,
                proxy_timeout: None,
                custom_headers: vec![(
                    http::HeaderName::from_static("x-custom"),
                    http::HeaderValue::from_static("yes"),
                )],
            },
            force_close: CancellationToken::new(),
        }
    });
    let conn = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 9], 9)), false);
    let stop = CancellationToken::new();
    let cx = RelayContext {
        state,
        conn: &conn,
        head_timeout: std::time::Duration::from_secs(5),
        stop: &stop,
    };
    match prepare(&cx, data) {
        Prepared::NeedHead => RelayOutcome::NeedHead,
        Prepared::NeedBody => RelayOutcome::NeedBody,
        Prepared::HandOff => RelayOutcome::HandOff,
        Prepared::Forward(plan) => RelayOutcome::Forward {
            upstream_request: plan.upstream_request,
            request_len: plan.request_len,
            body_len: plan.body_len,
        },
    }
}
