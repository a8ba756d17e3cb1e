//! The hub: the JupyterHub REST API and OAuth2 provider that `jupyterhub-singleuser` talks to, the
//! HTML pages people use, and the server lifecycle (spawn, readiness, routes, stop, re-adoption).
//!
//! Architecture invariants:
//! - The hub never forwards user traffic. It tells the proxy process where routes go (over the
//!   configurable-http-proxy REST API) and the proxy does the rest, so the hub can die and restart
//!   without dropping a byte of anyone's kernel WebSocket.
//! - The database is the truth about servers. In-memory state (spawn progress) is only a cache that
//!   a restarted hub can do without: it re-derives everything from the store, the spawner's persisted
//!   state and the proxy's route table.
//! - The hub knows spawners and authenticators only through the traits in `hubfleet-types`.

mod admin;
mod api;
mod cookies;
mod culler;
mod error;
mod identity;
mod lifecycle;
mod login_limit;
mod metrics;
mod oauth_login;
mod pages;
mod proxy_link;
mod purge;
mod queue;
mod services;
mod share_pages;
mod shared_password;
mod state;
mod templates;

use std::future::Future;
use std::sync::Arc;

pub use error::HubError;
pub use proxy_link::{ProxyLauncher, ProxyLink};
pub use state::HubDeps;

/// The version of the JupyterHub wire protocol hubfleet speaks, reported in `X-JupyterHub-Version`
/// and `GET /hub/api`. Single-user servers compare it with their own and only warn on a mismatch.
pub const JUPYTERHUB_COMPAT_VERSION: &str = "6.1.1";

/// Runs the hub until `shutdown` resolves: reconciles state left by a previous hub process, then
/// serves HTTP on `hub.listen` and supervises servers and the proxy.
pub async fn run(
    deps: HubDeps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HubError> {
    let state = state::AppState::new(deps)?;
    let listener = tokio::net::TcpListener::bind(state.config.hub.listen)
        .await
        .map_err(|source| HubError::Bind {
            addr: state.config.hub.listen,
            source,
        })?;
    lifecycle::prepare(&state).await?;
    shared_password::load(&state).await?;
    tracing::info!(
        "hub ready on http://{}{}hub/",
        state.config.hub.listen,
        state.config.base_url
    );
    let shutdown = api::init(&state, shutdown).await?;
    let mut background = lifecycle::spawn_background_tasks(Arc::clone(&state));
    background.spawn(metrics::sample_event_loop(Arc::clone(&state)));
    background.spawn(culler::run(Arc::clone(&state)));
    background.spawn(purge::run(Arc::clone(&state)));
    let metrics_routes = axum::Router::new()
        .route(
            &format!("{}metrics", state.hub_prefix),
            axum::routing::get(metrics::metrics_endpoint),
        )
        .route(
            &format!("{}api/metrics", state.hub_prefix),
            axum::routing::get(metrics::metrics_endpoint),
        )
        .with_state(Arc::clone(&state));
    let app = api::router(Arc::clone(&state))
        .merge(pages::router(Arc::clone(&state)))
        .merge(oauth_login::router(Arc::clone(&state)))
        .merge(admin::router(Arc::clone(&state)))
        .merge(share_pages::router(Arc::clone(&state)))
        .merge(metrics_routes)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::record_requests,
        ))
        .layer(axum::middleware::from_fn(common_headers));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    background.abort_all();
    served.map_err(HubError::Serve)
}

/// Headers JupyterHub puts on every hub response.
async fn common_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-jupyterhub-version",
        http::HeaderValue::from_static(JUPYTERHUB_COMPAT_VERSION),
    );
    headers
        .entry(http::header::CONTENT_SECURITY_POLICY)
        .or_insert(http::HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    response
}
