//! Prometheus metrics at `<base>hub/metrics`, with JupyterHub's metric names, types, labels and
//! buckets (so the upstream Grafana dashboards work unchanged), plus the spawn queue: its length,
//! how long people waited, and starts refused because it was full.
//!
//! Scraping needs a token with `read:metrics` unless `hub.public_metrics` is set.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{HubError, identity};

/// Python `prometheus_client`'s default buckets, which JupyterHub's request histogram uses.
const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const SPAWN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];
const STOP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
];
const EVENT_LOOP_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    handler: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnLabels {
    status: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeriodLabel {
    period: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS.iter().copied())
}

fn spawn_histogram() -> Histogram {
    Histogram::new(SPAWN_BUCKETS.iter().copied())
}

fn stop_histogram() -> Histogram {
    Histogram::new(STOP_BUCKETS.iter().copied())
}

fn family<L: Clone + std::hash::Hash + Eq>(constructor: fn() -> Histogram) -> HistogramFamily<L> {
    Family::new_with_constructor(constructor)
}

pub(crate) struct HubMetrics {
    registry: Registry,
    requests: HistogramFamily<RequestLabels>,
    spawns: HistogramFamily<SpawnLabels>,
    running_servers: Gauge,
    total_users: Gauge,
    active_users: Family<PeriodLabel, Gauge>,
    check_routes: Histogram,
    startup: Histogram,
    init_spawners: Histogram,
    proxy_poll: Histogram,
    login: HistogramFamily<StatusLabel>,
    logout: Histogram,
    proxy_add: HistogramFamily<StatusLabel>,
    proxy_delete: HistogramFamily<StatusLabel>,
    server_poll: HistogramFamily<StatusLabel>,
    server_stop: HistogramFamily<StatusLabel>,
    event_loop: Histogram,
    csp_reports: Counter,
    queue_length: Gauge,
    queue_wait: Histogram,
    refused: Family<ReasonLabel, Counter>,
}

impl HubMetrics {
    pub fn new() -> HubMetrics {
        let mut metrics = HubMetrics {
            registry: Registry::default(),
            requests: family(default_histogram),
            spawns: family(spawn_histogram),
            running_servers: Gauge::default(),
            total_users: Gauge::default(),
            active_users: Family::default(),
            check_routes: default_histogram(),
            startup: default_histogram(),
            init_spawners: default_histogram(),
            proxy_poll: default_histogram(),
            login: family(default_histogram),
            logout: default_histogram(),
            proxy_add: family(default_histogram),
            proxy_delete: family(default_histogram),
            server_poll: family(default_histogram),
            server_stop: family(stop_histogram),
            event_loop: Histogram::new(EVENT_LOOP_BUCKETS.iter().copied()),
            csp_reports: Counter::default(),
            queue_length: Gauge::default(),
            queue_wait: Histogram::new(QUEUE_WAIT_BUCKETS.iter().copied()),
            refused: Family::default(),
        };
        // Label sets JupyterHub pre-creates, so dashboards see zeros rather than gaps.
        for (status, reason) in [
            ("success", ""),
            ("failure", "throttled"),
            ("error", "error"),
        ] {
            let _ = metrics.spawns.get_or_create(&SpawnLabels {
                status: status.into(),
                reason: reason.into(),
            });
        }
        for period in ["24h", "7d", "30d"] {
            let _ = metrics.active_users.get_or_create(&PeriodLabel {
                period: period.into(),
            });
        }
        let _ = metrics.refused.get_or_create(&ReasonLabel {
            reason: "queue-full".into(),
        });
        let status = |status: &str| StatusLabel {
            status: status.into(),
        };
        for family in [
            &metrics.login,
            &metrics.proxy_add,
            &metrics.proxy_delete,
            &metrics.server_stop,
        ] {
            let _ = family.get_or_create(&status("success"));
            let _ = family.get_or_create(&status("failure"));
        }
        let _ = metrics.server_poll.get_or_create(&status("running"));
        let _ = metrics.server_poll.get_or_create(&status("stopped"));
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let jh = self.registry.sub_registry_with_prefix("jupyterhub");
        jh.register(
            "request_duration_seconds",
            "request duration for all HTTP requests",
            self.requests.clone(),
        );
        jh.register(
            "server_spawn_duration_seconds",
            "time taken for server spawning operation",
            self.spawns.clone(),
        );
        jh.register(
            "running_servers",
            "the number of user servers currently running",
            self.running_servers.clone(),
        );
        jh.register(
            "total_users",
            "total number of users",
            self.total_users.clone(),
        );
        jh.register(
            "active_users",
            "number of users who were active in the given time period",
            self.active_users.clone(),
        );
        jh.register(
            "check_routes_duration_seconds",
            "Time taken to validate all routes in proxy",
            self.check_routes.clone(),
        );
        jh.register(
            "hub_startup_duration_seconds",
            "Time taken for Hub to start",
            self.startup.clone(),
        );
        jh.register(
            "init_spawners_duration_seconds",
            "Time taken for spawners to initialize",
            self.init_spawners.clone(),
        );
        jh.register(
            "proxy_poll_duration_seconds",
            "duration for polling all routes from proxy",
            self.proxy_poll.clone(),
        );
        jh.register(
            "login_duration_seconds",
            "Time taken for the login operation",
            self.login.clone(),
        );
        jh.register(
            "logout_duration_seconds",
            "Time taken for the logout operation",
            self.logout.clone(),
        );
        jh.register(
            "proxy_add_duration_seconds",
            "duration for adding user routes to proxy",
            self.proxy_add.clone(),
        );
        jh.register(
            "proxy_delete_duration_seconds",
            "duration for deleting user routes from proxy",
            self.proxy_delete.clone(),
        );
        jh.register(
            "server_poll_duration_seconds",
            "time taken to poll if server is running",
            self.server_poll.clone(),
        );
        jh.register(
            "server_stop_seconds",
            "time taken for server stopping operation",
            self.server_stop.clone(),
        );
        jh.register(
            "event_loop_interval_seconds",
            "Distribution of measured event loop intervals",
            self.event_loop.clone(),
        );
        jh.register(
            "csp_reports",
            "Counter of csp reports",
            self.csp_reports.clone(),
        );
        let hf = self.registry.sub_registry_with_prefix("hubfleet");
        hf.register(
            "spawn_queue_length",
            "starts waiting in the spawn queue",
            self.queue_length.clone(),
        );
        hf.register(
            "spawn_queue_wait_seconds",
            "time starts spent waiting in the spawn queue",
            self.queue_wait.clone(),
        );
        hf.register(
            "spawns_refused",
            "starts refused outright, by reason",
            self.refused.clone(),
        );
    }

    pub fn request(&self, method: &str, handler: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                handler: handler.to_string(),
                code: code.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A spawn ended: `reason` is `None` for success.
    pub fn spawn_finished(&self, reason: Option<&str>, elapsed: Duration, queue_wait: Duration) {
        let (status, reason) = match reason {
            None => ("success", ""),
            Some("error") => ("error", "error"),
            Some(reason) => ("failure", reason),
        };
        self.spawns
            .get_or_create(&SpawnLabels {
                status: status.into(),
                reason: reason.into(),
            })
            .observe(elapsed.as_secs_f64());
        self.queue_wait.observe(queue_wait.as_secs_f64());
    }

    pub fn spawn_refused(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
        self.spawns
            .get_or_create(&SpawnLabels {
                status: "failure".into(),
                reason: "throttled".into(),
            })
            .observe(0.0);
    }

    pub fn timed(&self, which: Timed, elapsed: Duration, ok: bool) {
        let status = |ok: bool, yes: &str, no: &str| StatusLabel {
            status: if ok { yes } else { no }.to_string(),
        };
        let seconds = elapsed.as_secs_f64();
        match which {
            Timed::CheckRoutes => self.check_routes.observe(seconds),
            Timed::Startup => self.startup.observe(seconds),
            Timed::InitSpawners => self.init_spawners.observe(seconds),
            Timed::ProxyPoll => self.proxy_poll.observe(seconds),
            Timed::Logout => self.logout.observe(seconds),
            Timed::Login => self
                .login
                .get_or_create(&status(ok, "success", "failure"))
                .observe(seconds),
            Timed::ProxyAdd => self
                .proxy_add
                .get_or_create(&status(ok, "success", "failure"))
                .observe(seconds),
            Timed::ProxyDelete => self
                .proxy_delete
                .get_or_create(&status(ok, "success", "failure"))
                .observe(seconds),
            Timed::ServerPoll => self
                .server_poll
                .get_or_create(&status(ok, "running", "stopped"))
                .observe(seconds),
            Timed::ServerStop => self
                .server_stop
                .get_or_create(&status(ok, "success", "failure"))
                .observe(seconds),
            Timed::EventLoop => self.event_loop.observe(seconds),
        }
    }

    /// Brings the gauges up to date and renders everything in the OpenMetrics text format.
    async fn render(&self, state: &AppState) -> Result<String, HubError> {
        self.total_users.set(state.store.count_users().await?);
        self.running_servers
            .set(state.store.count_running_servers().await?);
        let now = hubfleet_types::now();
        for (period, days) in [("24h", 1), ("7d", 7), ("30d", 30)] {
            let active = state
                .store
                .count_active_users(now - chrono::Duration::days(days))
                .await?;
            self.active_users
                .get_or_create(&PeriodLabel {
                    period: period.into(),
                })
                .set(active);
        }
        self.queue_length
            .set(i64::try_from(state.queue.waiting()).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| HubError::Internal(format!("encoding metrics: {e}")))?;
        Ok(text)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Timed {
    CheckRoutes,
    Startup,
    InitSpawners,
    ProxyPoll,
    Login,
    Logout,
    ProxyAdd,
    ProxyDelete,
    ServerPoll,
    ServerStop,
    EventLoop,
}

/// `GET <base>hub/metrics` (and `<base>hub/api/metrics`).
pub(crate) async fn metrics_endpoint(
    State(state): State<Arc<AppState>>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    if !state.config.hub.public_metrics {
        let identity = identity::from_token(&state, &headers)
            .await?
            .ok_or(ApiError(HubError::Unauthenticated))?;
        if !identity
            .scopes
            .allows("read:metrics", hubfleet_core::scopes::Resource::Hub)
        {
            return Err(ApiError(HubError::Forbidden("read:metrics".into())));
        }
    }
    let (hub, proxy) = tokio::join!(state.metrics.render(&state), state.proxy.metrics_text());
    let body = with_proxy_metrics(hub?, proxy);
    Ok((
        [(
            http::header::CONTENT_TYPE,
            hubfleet_proxy::metrics::OPENMETRICS_CONTENT_TYPE,
        )],
        body,
    )
        .into_response())
}

/// The hub's OpenMetrics text with the proxy's families added before the single `# EOF` that
/// must end it.
fn with_proxy_metrics(hub: String, proxy: Option<String>) -> String {
    let Some(proxy) = proxy.filter(|text| text.ends_with("# EOF\n")) else {
        return hub;
    };
    match hub.strip_suffix("# EOF\n") {
        Some(families) => families.to_owned() + &proxy,
        None => hub,
    }
}

/// The `handler` label: JupyterHub's handler class for routes it has (dashboards filter on
/// these), our route pattern otherwise.
fn handler_label(base_hub: &str, matched: Option<&str>) -> String {
    let Some(route) = matched else {
        return "hubfleet.unmatched".to_string();
    };
    let local = route.strip_prefix(base_hub).unwrap_or(route);
    let jupyterhub = match local {
        "api" | "api/" => "jupyterhub.apihandlers.hub.RootAPIHandler",
        "api/user" => "jupyterhub.apihandlers.users.SelfAPIHandler",
        "api/users" => "jupyterhub.apihandlers.users.UserListAPIHandler",
        "api/users/{name}" => "jupyterhub.apihandlers.users.UserAPIHandler",
        "api/users/{name}/server" | "api/users/{name}/servers/{server_name}" => {
            "jupyterhub.apihandlers.users.UserServerAPIHandler"
        }
        "api/users/{name}/server/progress" | "api/users/{name}/servers/{server_name}/progress" => {
            "jupyterhub.apihandlers.users.SpawnProgressAPIHandler"
        }
        "api/users/{name}/activity" => "jupyterhub.apihandlers.users.ActivityAPIHandler",
        "api/oauth2/authorize" => "jupyterhub.apihandlers.auth.OAuthAuthorizeHandler",
        "api/oauth2/token" => "jupyterhub.apihandlers.auth.OAuthTokenHandler",
        "login" => "jupyterhub.handlers.login.LoginHandler",
        "logout" => "jupyterhub.handlers.login.LogoutHandler",
        "home" => "jupyterhub.handlers.pages.HomeHandler",
        "spawn" | "spawn/{user}" => "jupyterhub.handlers.pages.SpawnHandler",
        "spawn-pending/{user}" => "jupyterhub.handlers.pages.SpawnPendingHandler",
        "health" | "api/health" => "jupyterhub.handlers.pages.HealthCheckHandler",
        "metrics" | "api/metrics" => "jupyterhub.handlers.metrics.MetricsHandler",
        _ if local.starts_with("user/") => "jupyterhub.handlers.base.UserUrlHandler",
        _ => return format!("hubfleet:{route}"),
    };
    jupyterhub.to_string()
}

/// Middleware recording `jupyterhub_request_duration_seconds` for every request.
pub(crate) async fn record_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let response = next.run(request).await;
    let handler = handler_label(&state.hub_prefix, matched.as_deref());
    state.metrics.request(
        &method,
        &handler,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Samples how late a periodic wake-up is (JupyterHub's event-loop lag metric).
pub(crate) async fn sample_event_loop(state: Arc<AppState>) {
    const INTERVAL: Duration = Duration::from_millis(50);
    loop {
        let before = std::time::Instant::now();
        tokio::time::sleep(INTERVAL).await;
        state
            .metrics
            .timed(Timed::EventLoop, before.elapsed(), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_requests_get_jupyterhubs_handler_name() {
        assert_eq!(
            handler_label("/hub/", Some("/hub/api/users/{name}/server/progress")),
            "jupyterhub.apihandlers.users.SpawnProgressAPIHandler"
        );
        assert_eq!(
            handler_label("/jh/hub/", Some("/jh/hub/login")),
            "jupyterhub.handlers.login.LoginHandler"
        );
        assert_eq!(
            handler_label("/hub/", Some("/hub/static/hub.css")),
            "hubfleet:/hub/static/hub.css"
        );
    }

    #[test]
    fn proxy_families_go_before_the_one_eof() {
        let hub = "# TYPE a gauge\na 1\n# EOF\n".to_string();
        let proxy = "# TYPE b gauge\nb 2\n# EOF\n".to_string();
        assert_eq!(
            with_proxy_metrics(hub.clone(), Some(proxy)),
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n# EOF\n"
        );
        assert_eq!(with_proxy_metrics(hub.clone(), None), hub);
        // Text that is not OpenMetrics (cut short, or some other proxy's) is left out.
        assert_eq!(with_proxy_metrics(hub.clone(), Some("b 2\n".into())), hub);
    }

    #[test]
    fn rendered_names_follow_jupyterhub() {
        let metrics = HubMetrics::new();
        metrics.request(
            "GET",
            "jupyterhub.handlers.pages.HomeHandler",
            200,
            Duration::from_millis(3),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        for name in [
            "jupyterhub_request_duration_seconds_bucket{",
            "jupyterhub_server_spawn_duration_seconds_bucket{",
            "jupyterhub_active_users{period=\"24h\"}",
            "jupyterhub_csp_reports_total",
            "hubfleet_spawns_refused_total{reason=\"queue-full\"}",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("le=\"600.0\""), "spawn buckets go to 600 s");
    }
}
