//! Listeners and connection serving: the public port (plain or TLS, HTTP/1.1 and HTTP/2), the REST API port,
//! the optional metrics and HTTP→HTTPS redirect ports, and graceful shutdown.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState, AuthToken};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::forward::{
    self, ConnInfo, ErrorChain, ForwardOptions, ForwardState, UpstreamClient, fixed_response,
};
use crate::metrics::{GaugeGuard, ProxyMetrics};
use crate::relay::{self, RelayContext, Relayed, UpstreamPool};
use crate::routes::RouteTable;
use crate::tls::{ReloadableCert, TlsPaths, UpstreamTls, upstream_client_config};

/// A TLS handshake that takes longer than this is abandoned.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often certificate files are checked for changes unless configured otherwise.
pub const DEFAULT_TLS_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Idle upstream connections are kept this long for reuse.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(90);

/// Everything the proxy needs to start. [`Default`] binds both ports to `127.0.0.1:0` (ephemeral ports, for
/// tests and in-process use); the CLI fills in CHP's defaults.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The public (proxied) listener.
    pub public_addr: SocketAddr,
    /// The REST API listener.
    pub api_addr: SocketAddr,
    /// Serve `/metrics` here if set.
    pub metrics_addr: Option<SocketAddr>,
    /// Answer plain HTTP here with a redirect to HTTPS on `redirect_to_port`.
    pub redirect_addr: Option<SocketAddr>,
    /// The HTTPS port redirects point to (defaults to the public port).
    pub redirect_to_port: Option<u16>,
    /// `CONFIGPROXY_AUTH_TOKEN`; the API is open without one, as in CHP.
    pub auth_token: Option<String>,
    /// Installed as the `/` route at start.
    pub default_target: Option<String>,
    /// Base URL of the error pages (`<error_target>/<code>?url=…`).
    pub error_target: Option<String>,
    /// Route keys are `/<host><path>`.
    pub host_routing: bool,
    /// PEM certificate chain and key for the public port.
    pub tls: Option<TlsPaths>,
    /// Serve the REST API over TLS (CHP's `--api-ssl-*`, JupyterHub's `internal_ssl`).
    pub api_tls: Option<TlsPaths>,
    /// How to connect to `https://` targets (CHP's `--client-ssl-*`, `--insecure`).
    pub upstream_tls: UpstreamTls,
    /// How often the certificate files are checked for changes (reloaded when their contents
    /// change); `None` leaves reloading to SIGHUP.
    pub tls_watch_interval: Option<Duration>,
    /// Add `X-Forwarded-*` headers.
    pub x_forward: bool,
    /// Forward the full original path (`false` strips the route prefix).
    pub include_prefix: bool,
    /// Prepend the target URL's path.
    pub prepend_path: bool,
    /// Inactivity limit on client connections while reading request headers (`--timeout`).
    pub timeout: Option<Duration>,
    /// Limit on waiting for an upstream's response headers (`--proxy-timeout`).
    pub proxy_timeout: Option<Duration>,
    /// Idle keep-alive limit on client connections.
    pub keep_alive_timeout: Duration,
    /// Headers set on every proxied request.
    pub custom_headers: Vec<(String, String)>,
    /// How long in-flight requests may run after a shutdown signal before connections and WebSocket
    /// tunnels are closed.
    pub shutdown_grace: Duration,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("public_addr", &self.public_addr)
            .field("api_addr", &self.api_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("redirect_addr", &self.redirect_addr)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("default_target", &self.default_target)
            .field("error_target", &self.error_target)
            .field("host_routing", &self.host_routing)
            .field("tls", &self.tls)
            .field("api_tls", &self.api_tls)
            .field("upstream_tls", &self.upstream_tls)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        let loopback_any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            public_addr: loopback_any_port,
            api_addr: loopback_any_port,
            metrics_addr: None,
            redirect_addr: None,
            redirect_to_port: None,
            auth_token: None,
            default_target: None,
            error_target: None,
            host_routing: false,
            tls: None,
            api_tls: None,
            upstream_tls: UpstreamTls::default(),
            tls_watch_interval: Some(DEFAULT_TLS_WATCH_INTERVAL),
            x_forward: true,
            include_prefix: true,
            prepend_path: true,
            timeout: None,
            proxy_timeout: None,
            keep_alive_timeout: Duration::from_millis(5000),
            custom_headers: Vec::new(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A shareable view of a running (or bound) proxy: its routes, counters and TLS certificate.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    routes: Arc<RouteTable>,
    metrics: Arc<ProxyMetrics>,
    /// The public port's and the REST API's certificates, if they use TLS.
    certs: Vec<Arc<ReloadableCert>>,
}

impl ProxyHandle {
    /// The live route table (changes are visible to traffic immediately).
    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// The traffic counters.
    pub fn metrics(&self) -> &Arc<ProxyMetrics> {
        &self.metrics
    }

    /// The counters in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.metrics_text()
    }

    /// Re-reads every TLS certificate and key; new handshakes use them. A no-op without TLS.
    /// A pair that fails to load keeps its old certificate; the first failure is returned.
    pub fn reload_tls(&self) -> Result<(), ProxyError> {
        let mut outcome = Ok(());
        for cert in &self.certs {
            let reloaded = cert.reload();
            self.count_reload(&reloaded);
            if let Err(error) = reloaded
                && outcome.is_ok()
            {
                outcome = Err(error);
            }
        }
        outcome
    }

    /// Reloads the certificates whose files changed since last looked at, logging each outcome.
    pub(crate) fn reload_changed_tls(&self) {
        for cert in &self.certs {
            let Some(reloaded) = cert.reload_if_changed() else {
                continue;
            };
            self.count_reload(&reloaded);
            let (cert_path, key_path) = cert.paths();
            match reloaded {
                Ok(()) => tracing::info!(
                    cert = %cert_path.display(),
                    key = %key_path.display(),
                    "TLS certificate files changed; reloaded"
                ),
                Err(error) => tracing::error!(
                    error = %ErrorChain(&error),
                    "TLS certificate files changed but cannot be used; still serving the previous certificate"
                ),
            }
        }
    }

    fn count_reload(&self, outcome: &Result<(), ProxyError>) {
        let counter = match outcome {
            Ok(()) => &self.metrics.tls_reloads_ok,
            Err(_) => &self.metrics.tls_reloads_failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A proxy whose listeners are bound; [`ProxyServer::serve`] runs it.
pub struct ProxyServer {
    public: TcpListener,
    api: TcpListener,
    metrics_listener: Option<TcpListener>,
    redirect: Option<(TcpListener, u16)>,
    tls: Option<TlsAcceptor>,
    api_tls: Option<TlsAcceptor>,
    tls_watch_interval: Option<Duration>,
    forward_state: Arc<ForwardState>,
    api_state: Arc<ApiState>,
    handle: ProxyHandle,
    http: Arc<auto::Builder<TokioExecutor>>,
    /// How long a client may take to send a request head, including keep-alive idle time.
    head_timeout: Duration,
    shutdown_grace: Duration,
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyServer")
            .field("public_addr", &self.public_addr())
            .field("api_addr", &self.api_addr())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    /// Loads TLS material, binds every listener and installs the default route.
    pub async fn bind(config: ProxyConfig) -> Result<ProxyServer, ProxyError> {
        let mut certs = Vec::new();
        let tls = match &config.tls {
            Some(paths) => {
                let cert = Arc::new(ReloadableCert::load(&paths.cert, &paths.key)?);
                let server_config = cert.server_config(paths, &[b"h2", b"http/1.1"])?;
                certs.push(cert);
                Some(TlsAcceptor::from(Arc::new(server_config)))
            }
            None => None,
        };
        let api_tls = match &config.api_tls {
            Some(paths) => {
                let cert = Arc::new(ReloadableCert::load(&paths.cert, &paths.key)?);
                let server_config = cert.server_config(paths, &[b"http/1.1"])?;
                certs.push(cert);
                Some(TlsAcceptor::from(Arc::new(server_config)))
            }
            None => None,
        };
        let client = upstream_client(&config.upstream_tls)?;
        let custom_headers = config
            .custom_headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    ProxyError::Config(format!("invalid custom header name `{name}`"))
                })?;
                let value = HeaderValue::from_str(value.trim()).map_err(|_| {
                    ProxyError::Config(format!("invalid value for custom header `{name}`"))
                })?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ProxyError>>()?;
        let error_target = config.error_target.as_ref().map(|target| {
            if target.ends_with('/') {
                target.clone()
            } else {
                format!("{target}/")
            }
        });

        let routes = Arc::new(RouteTable::new(config.host_routing));
        if let Some(default_target) = &config.default_target {
            let mut data = serde_json::Map::new();
            data.insert(
                "target".to_owned(),
                serde_json::Value::String(default_target.clone()),
            );
            routes
                .insert("/", data)
                .map_err(|error| ProxyError::Config(error.to_string()))?;
        }
        let metrics = Arc::new(ProxyMetrics::default());

        let public = bind(config.public_addr).await?;
        let api = bind(config.api_addr).await?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let public_port = public
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default();
        let redirect = match config.redirect_addr {
            Some(addr) => Some((
                bind(addr).await?,
                config.redirect_to_port.unwrap_or(public_port),
            )),
            None => None,
        };

        let forward_state = Arc::new(ForwardState {
            routes: routes.clone(),
            metrics: metrics.clone(),
            client,
            relay_pool: UpstreamPool::default(),
            options: ForwardOptions {
                x_forward: config.x_forward,
                include_prefix: config.include_prefix,
                prepend_path: config.prepend_path,
                error_target,
                proxy_timeout: config.proxy_timeout,
                custom_headers,
            },
            force_close: CancellationToken::new(),
        });
        let api_state = Arc::new(ApiState {
            routes: routes.clone(),
            metrics: metrics.clone(),
            auth_token: config
                .auth_token
                .clone()
                .filter(|token| !token.is_empty())
                .map(AuthToken),
        });

        let mut http = auto::Builder::new(TokioExecutor::new());
        // hyper starts the header-read timer whenever it waits for a request head, so on an idle keep-alive
        // connection this is also the keep-alive timeout.
        let header_timeout = config.timeout.map_or(config.keep_alive_timeout, |timeout| {
            timeout.max(config.keep_alive_timeout)
        });
        http.http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .max_buf_size(CONNECTION_BUFFER_LIMIT)
            .header_read_timeout(header_timeout);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            // RFC 8441: WebSockets over HTTP/2 (extended CONNECT), which browsers use when offered.
            .enable_connect_protocol();

        Ok(ProxyServer {
            public,
            api,
            metrics_listener,
            redirect,
            tls,
            api_tls,
            tls_watch_interval: config.tls_watch_interval,
            forward_state,
            api_state,
            handle: ProxyHandle {
                routes,
                metrics,
                certs,
            },
            http: Arc::new(http),
            head_timeout: header_timeout,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound public address.
    pub fn public_addr(&self) -> SocketAddr {
        local_addr(&self.public)
    }

    /// The bound REST API address.
    pub fn api_addr(&self) -> SocketAddr {
        local_addr(&self.api)
    }

    /// The bound metrics address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(local_addr)
    }

    /// The bound HTTP→HTTPS redirect address, if any.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect
            .as_ref()
            .map(|(listener, _)| local_addr(listener))
    }

    /// Routes, counters and TLS reload for this proxy.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish for a few
    /// seconds, and closes what is left (including WebSocket tunnels).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let stop_accepting = CancellationToken::new();
        let graceful = GracefulShutdown::new();
        let ctx = AcceptContext {
            graceful: &graceful,
            stop: &stop_accepting,
            force_close: &self.forward_state.force_close,
            http: &self.http,
        };

        let forward_state = self.forward_state.clone();
        let tls = self.tls.clone();
        let head_timeout = self.head_timeout;
        let public_stop = stop_accepting.clone();
        let public = accept_loop(self.public, ctx, move |stream, peer, watcher, http| {
            let state = forward_state.clone();
            let tls = tls.clone();
            let stop = public_stop.child_token();
            async move {
                let _open =
                    GaugeGuard::enter(state.metrics.clone(), |metrics| &metrics.connections_active);
                let conn = ConnInfo::new(peer, tls.is_some());
                let public = PublicConnection {
                    state: state.clone(),
                    conn: conn.clone(),
                    head_timeout,
                    stop,
                };
                let service =
                    service_fn(move |req| forward::handle(state.clone(), conn.clone(), req));
                let Some(acceptor) = tls else {
                    public.serve(stream, service, &http, watcher).await;
                    return;
                };
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                        serve_io(stream, service, &http, watcher).await;
                    }
                    Ok(Ok(stream)) => public.serve(stream, service, &http, watcher).await,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, error = %ErrorChain(&error), "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        });
        let api_state = self.api_state.clone();
        let api_tls = self.api_tls.clone();
        let api = accept_loop(self.api, ctx, move |stream, peer, watcher, http| {
            let state = api_state.clone();
            let tls = api_tls.clone();
            async move {
                let service = service_fn(move |req| api::handle(state.clone(), req));
                serve_plain_or_tls(stream, peer, tls, service, &http, watcher).await;
            }
        });
        let metrics = self.handle.metrics.clone();
        let metrics_loop = async {
            if let Some(listener) = self.metrics_listener {
                accept_loop(listener, ctx, move |stream, _peer, watcher, http| {
                    let metrics = metrics.clone();
                    async move {
                        let service = service_fn(move |req| serve_metrics(metrics.clone(), req));
                        serve_io(stream, service, &http, watcher).await;
                    }
                })
                .await;
            }
        };
        let redirect_loop = async {
            if let Some((listener, https_port)) = self.redirect {
                accept_loop(
                    listener,
                    ctx,
                    move |stream, _peer, watcher, http| async move {
                        let service = service_fn(move |req| redirect_to_https(https_port, req));
                        serve_io(stream, service, &http, watcher).await;
                    },
                )
                .await;
            }
        };
        let handle = self.handle.clone();
        let watch_interval = self.tls_watch_interval;
        let watch_certificates = async {
            let Some(interval) = watch_interval.filter(|_| !handle.certs.is_empty()) else {
                return;
            };
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop_accepting.cancelled() => return,
                }
                // Reading a few small files; off the async workers all the same.
                let handle = handle.clone();
                let _ = tokio::task::spawn_blocking(move || handle.reload_changed_tls()).await;
            }
        };
        let accepting = async {
            tokio::join!(public, api, metrics_loop, redirect_loop, watch_certificates);
        };
        let stopping = async {
            shutdown.await;
            stop_accepting.cancel();
        };
        tokio::join!(accepting, stopping);

        if tokio::time::timeout(self.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period; closing them");
        }
        self.forward_state.force_close.cancel();
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes; see [`ProxyServer`] to learn the bound addresses first.
pub async fn serve(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    ProxyServer::bind(config).await?.serve(shutdown).await
}

/// The most a connection buffers (hyper's default is ~400 KiB). Bodies stream through in chunks
/// anyway; a lower cap keeps memory flat after large transfers on many connections, and still
/// leaves room for request heads far larger than browsers send.
const CONNECTION_BUFFER_LIMIT: usize = 64 * 1024;

pub(crate) fn upstream_client(tls: &UpstreamTls) -> Result<UpstreamClient, ProxyError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(20)));
    // The TLS layer below takes `https://` targets; plain ones pass through it untouched.
    connector.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(upstream_client_config(tls)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .http1_max_buf_size(CONNECTION_BUFFER_LIMIT)
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(UPSTREAM_POOL_IDLE)
        .build(connector))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[derive(Clone, Copy)]
struct AcceptContext<'a> {
    graceful: &'a GracefulShutdown,
    stop: &'a CancellationToken,
    force_close: &'a CancellationToken,
    http: &'a Arc<auto::Builder<TokioExecutor>>,
}

/// Accepts until told to stop (then drops the listener, so new connections are refused), spawning `serve_conn` for each connection with a shutdown watcher.
async fn accept_loop<F, Fut>(listener: TcpListener, ctx: AcceptContext<'_>, serve_conn: F)
where
    F: Fn(
        TcpStream,
        SocketAddr,
        hyper_util::server::graceful::Watcher,
        Arc<auto::Builder<TokioExecutor>>,
    ) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ctx.stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Small WebSocket frames and API answers must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let conn = serve_conn(stream, peer, ctx.graceful.watcher(), ctx.http.clone());
                let force_close = ctx.force_close.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = conn => {}
                        () = force_close.cancelled() => {}
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and similar: back off briefly instead of spinning on the error.
                tracing::warn!(error = %ErrorChain(&error), "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = ctx.stop.cancelled() => return,
                }
            }
        }
    }
}

/// Serves a connection as is, or after a TLS handshake when `tls` is set.
async fn serve_plain_or_tls<S>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Some(acceptor) = tls else {
        serve_io(stream, service, http, watcher).await;
        return;
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_io(stream, service, http, watcher).await,
        Ok(Err(error)) => {
            tracing::debug!(%peer, error = %ErrorChain(&error), "TLS handshake failed")
        }
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A public connection: relayed while its requests are ordinary HTTP/1.1, then served by hyper.
struct PublicConnection {
    state: Arc<ForwardState>,
    conn: ConnInfo,
    head_timeout: Duration,
    stop: CancellationToken,
}

impl PublicConnection {
    async fn serve<I, S>(
        self,
        io: I,
        service: S,
        http: &auto::Builder<TokioExecutor>,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        I: relay::ClientIo + Send + 'static,
        S: hyper::service::Service<
                Request<Incoming>,
                Response = Response<ProxyBody>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let relayed = relay::relay(
            io,
            RelayContext {
                state: &self.state,
                conn: &self.conn,
                head_timeout: self.head_timeout,
                stop: &self.stop,
            },
        )
        .await;
        if let Relayed::HandOff(io) = relayed {
            serve_io(io, service, http, watcher).await;
        }
    }
}

async fn serve_io<I, S>(
    io: I,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(conn).await {
        tracing::debug!(error = %error, "connection ended with an error");
    }
}

async fn serve_metrics(
    metrics: Arc<ProxyMetrics>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.uri().path() != "/metrics" {
        let mut response = Response::new(ProxyBody::empty());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    Ok(fixed_response(
        StatusCode::OK,
        crate::metrics::OPENMETRICS_CONTENT_TYPE,
        metrics.metrics_text(),
    ))
}

async fn redirect_to_https(
    https_port: u16,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("localhost");
    let host = host.split(':').next().unwrap_or(host);
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}
