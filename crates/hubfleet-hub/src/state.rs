//! What every handler and background task shares.

use std::sync::Arc;
use std::time::Duration;

use hubfleet_config::Config;
use hubfleet_store::Store;
use hubfleet_types::{Authenticator, Spawner};

use crate::HubError;
use crate::lifecycle::SpawnTracker;
use crate::metrics::HubMetrics;
use crate::proxy_link::ProxyLink;
use crate::queue::{QueueLimits, SpawnQueue};
use crate::services::ManagedServices;
use crate::templates::Templates;

/// The concrete parts the binary wires into the hub.
pub struct HubDeps {
    pub config: Config,
    pub store: Store,
    pub spawner: Arc<dyn Spawner>,
    pub authenticator: Arc<dyn Authenticator>,
    pub proxy: ProxyLink,
    /// The single-user command used when `spawner.cmd` is not configured (the provisioned
    /// default environment's `jupyterhub-singleuser`).
    pub default_single_user_cmd: Vec<String>,
}

pub(crate) struct AppState {
    pub config: Config,
    pub store: Store,
    pub spawner: Arc<dyn Spawner>,
    pub authenticator: Arc<dyn Authenticator>,
    pub proxy: ProxyLink,
    pub single_user_cmd: Vec<String>,
    pub templates: Templates,
    pub spawns: SpawnTracker,
    pub queue: Arc<SpawnQueue>,
    pub metrics: HubMetrics,
    pub services: ManagedServices,
    /// For readiness checks of single-user servers: no redirects, short timeouts.
    pub http: reqwest::Client,
    /// `<base_url>hub/`.
    pub hub_prefix: String,
    /// `http://<hub.listen><base_url>hub/api`, what single-user servers call.
    pub hub_api_url: String,
    pub secure_cookies: bool,
    /// Notified by `POST /hub/api/shutdown`; the server stops gracefully when it fires.
    pub shutdown_requested: tokio::sync::Notify,
}

impl AppState {
    /// `path` (which starts with `base_url`) made absolute on the configured `public_url`'s origin;
    /// `None` without one (JupyterHub's `full_url` fields and `JUPYTERHUB_PUBLIC_*` variables).
    pub(crate) fn public_url(&self, path: &str) -> Option<String> {
        let origin = self.config.public_origin.as_ref()?;
        Some(format!("{origin}{path}"))
    }

    pub fn new(deps: HubDeps) -> Result<Arc<AppState>, HubError> {
        let config = deps.config;
        let single_user_cmd = match &config.spawner.cmd {
            Some(cmd) => cmd.clone(),
            None => deps.default_single_user_cmd,
        }
        .into_iter()
        .chain(config.spawner.args.iter().cloned())
        .collect::<Vec<_>>();
        if single_user_cmd.is_empty() {
            return Err(HubError::Internal(
                "no single-user command: set spawner.cmd".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HubError::Internal(format!("building the HTTP client: {e}")))?;
        let hub_prefix = format!("{}hub/", config.base_url);
        let hub_api_url = format!("http://{}{}api", config.hub.listen, hub_prefix);
        let secure_cookies = config.proxy.tls.is_some();
        Ok(Arc::new(AppState {
            templates: Templates::new(&config.base_url)?,
            spawns: SpawnTracker::default(),
            queue: SpawnQueue::new(QueueLimits {
                concurrent_starts: config.spawner.concurrent_starts as usize,
                max_queue: config.spawner.max_queue as usize,
                active_server_limit: config.spawner.active_server_limit as usize,
            }),
            metrics: HubMetrics::new(),
            services: ManagedServices::default(),
            store: deps.store,
            spawner: deps.spawner,
            authenticator: deps.authenticator,
            proxy: deps.proxy,
            single_user_cmd,
            http,
            hub_prefix,
            hub_api_url,
            secure_cookies,
            shutdown_requested: tokio::sync::Notify::new(),
            config,
        }))
    }

    /// `<base>user/<name>/` or `<base>user/<name>/<server>/`: the URL prefix of a server.
    pub fn server_prefix(&self, user: &str, server: &str) -> String {
        let user = crate::pages::url_escape(user);
        if server.is_empty() {
            format!("{}user/{user}/", self.config.base_url)
        } else {
            format!("{}user/{user}/{server}/", self.config.base_url)
        }
    }
}
