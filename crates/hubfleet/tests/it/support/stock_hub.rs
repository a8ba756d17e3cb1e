//! [`StockJupyterHub`]: the real JupyterHub from PyPI, configured like environment.md §2
//! (DummyAuthenticator, SimpleLocalProcessSpawner), optionally with our proxy standing in for
//! configurable-http-proxy.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{Browser, ProcessGuard, free_port, singleuser_venv, wait_for, workspace_root};

/// The DummyAuthenticator password every user of a [`StockJupyterHub`] logs in with.
pub const STOCK_HUB_PASSWORD: &str = "stock-hub-test-password";

/// JupyterHub takes a few seconds to import and start (longer while cargo builds share the CPU).
const HUB_START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running stock JupyterHub in a tempdir; dropping it kills the hub, its proxy and every
/// single-user server it spawned.
#[derive(Debug)]
pub struct StockJupyterHub {
    // Declared before `dir` so the processes die before their working directory is removed.
    process: ProcessGuard,
    dir: tempfile::TempDir,
    public_port: u16,
    hub_port: u16,
    proxy_api_port: u16,
    api_token: String,
    proxy_auth_token: String,
    internal_ssl: bool,
}

impl StockJupyterHub {
    /// Starts `jupyterhub` from the `jh-<version>` venv and waits until its login page answers
    /// through the proxy. `proxy_command` replaces `ConfigurableHTTPProxy.command`; `None` uses
    /// the configurable-http-proxy installed under `<workspace>/.cache/node`.
    pub async fn start(version: &str, proxy_command: Option<Vec<String>>) -> Self {
        Self::start_configured(version, proxy_command, false).await
    }

    /// Like [`StockJupyterHub::start`] with `c.JupyterHub.internal_ssl = True`: JupyterHub makes its
    /// own CAs and certificates, serves the hub and single-user servers over HTTPS, and starts the
    /// proxy with `--api-ssl-*` (REST API over mutual TLS) and `--client-ssl-*` (the proxy's identity
    /// towards `https://` targets). The public port stays plain HTTP.
    pub async fn start_with_internal_ssl(
        version: &str,
        proxy_command: Option<Vec<String>>,
    ) -> Self {
        Self::start_configured(version, proxy_command, true).await
    }

    async fn start_configured(
        version: &str,
        proxy_command: Option<Vec<String>>,
        internal_ssl: bool,
    ) -> Self {
        let venv = singleuser_venv(version);
        let proxy_command = proxy_command.unwrap_or_else(|| vec![chp_path().display().to_string()]);
        let dir = tempfile::Builder::new()
            .prefix(&format!("hubfleet-stock-jh-{version}-"))
            .tempdir()
            .expect("create the hub's tempdir");
        let (public_port, hub_port, proxy_api_port) = (free_port(), free_port(), free_port());
        let api_token = format!("svc-{}", random_hex());
        let proxy_auth_token = format!("chp-{}", random_hex());
        let homes = dir.path().join("homes");
        std::fs::create_dir_all(&homes).expect("create the homes dir");

        let py = |value: &str| serde_json::to_string(value).expect("a JSON string is a Python str");
        let py_list = |values: &[String]| {
            let items: Vec<String> = values.iter().map(|v| py(v)).collect();
            format!("[{}]", items.join(", "))
        };
        let singleuser = venv.join("bin").join("jupyterhub-singleuser");
        let config = format!(
            r#"# Written by the hubfleet end-to-end tests.
c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = {db_url}
c.JupyterHub.cookie_secret_file = {cookie_secret}
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = {password}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{'admin'}}
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = {home_template}
c.Spawner.ip = '127.0.0.1'
c.Spawner.cmd = [{singleuser}]
c.Spawner.args = ['--allow-root']
c.Spawner.default_url = '/lab'
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.ConfigurableHTTPProxy.command = {proxy_command}
c.ConfigurableHTTPProxy.api_url = '{api_scheme}://127.0.0.1:{proxy_api_port}'
c.JupyterHub.internal_ssl = {internal_ssl}
# Absolute: SimpleLocalProcessSpawner leaves the certificates where they are and starts the
# single-user server in the user's home, where the default relative path would not resolve.
c.JupyterHub.internal_certs_location = {certs_dir}
c.ConfigurableHTTPProxy.auth_token = {proxy_auth_token}
c.ConfigurableHTTPProxy.pid_file = {proxy_pid}
c.JupyterHub.services = [{{'name': 'hubfleet-it', 'api_token': {api_token}}}]
c.JupyterHub.load_roles = [{{
    'name': 'hubfleet-it-role',
    'scopes': ['admin:users', 'admin:servers', 'read:hub', 'list:users', 'tokens', 'proxy'],
    'services': ['hubfleet-it'],
}}]
"#,
            db_url = py(&format!(
                "sqlite:///{}",
                dir.path().join("jupyterhub.sqlite").display()
            )),
            cookie_secret = py(&dir
                .path()
                .join("jupyterhub_cookie_secret")
                .display()
                .to_string()),
            password = py(STOCK_HUB_PASSWORD),
            home_template = py(&format!("{}/{{username}}", homes.display())),
            singleuser = py(&singleuser.display().to_string()),
            proxy_command = py_list(&proxy_command),
            proxy_auth_token = py(&proxy_auth_token),
            proxy_pid = py(&dir.path().join("proxy.pid").display().to_string()),
            api_token = py(&api_token),
            api_scheme = if internal_ssl { "https" } else { "http" },
            internal_ssl = if internal_ssl { "True" } else { "False" },
            certs_dir = py(&dir.path().join("internal-ssl").display().to_string()),
        );
        let config_path = dir.path().join("jupyterhub_config.py");
        std::fs::write(&config_path, config).expect("write jupyterhub_config.py");

        let mut command = Command::new(venv.join("bin").join("jupyterhub"));
        command
            .arg("-f")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("PATH", path_with(venv.join("bin")));
        let process = ProcessGuard::spawn(&format!("jupyterhub-{version}"), command);
        let hub = Self {
            process,
            dir,
            public_port,
            hub_port,
            proxy_api_port,
            api_token,
            proxy_auth_token,
            internal_ssl,
        };
        hub.wait_until_serving().await;
        hub
    }

    async fn wait_until_serving(&self) {
        let browser = Browser::new(&self.public_url());
        wait_for(
            "stock JupyterHub's login page through its proxy",
            HUB_START_TIMEOUT,
            || {
                let browser = browser.clone();
                async move {
                    let response = browser.client().get(browser.url("/hub/login")).send().await;
                    response
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ())
                }
            },
        )
        .await;
    }

    /// The public (proxy) URL, e.g. `http://127.0.0.1:41234`, without a trailing slash.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.public_port)
    }

    /// The hub's own REST API root, `http://127.0.0.1:<hub port>/hub/api`.
    pub fn hub_api_url(&self) -> String {
        format!("http://127.0.0.1:{}/hub/api", self.hub_port)
    }

    /// A service token with admin scopes for `Authorization: token …` calls to the hub API.
    pub fn api_token(&self) -> &str {
        &self.api_token
    }

    /// The proxy's REST API root, `http://127.0.0.1:<port>` (`https://` with internal SSL).
    pub fn proxy_api_url(&self) -> String {
        let scheme = if self.internal_ssl { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.proxy_api_port)
    }

    /// A client for the proxy's REST API. With internal SSL it acts as the hub does: it trusts the
    /// hub's CA bundle (which holds the proxy-API CA) and, with `with_hub_certificate`, presents the
    /// hub's own internal certificate (without it the proxy should refuse the client).
    pub fn proxy_api_client(&self, with_hub_certificate: bool) -> reqwest::Client {
        if !self.internal_ssl {
            return reqwest::Client::new();
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = self.dir.path().join("internal-ssl");
        let ca = std::fs::read(certs.join("hub-ca_trust.crt")).expect("the hub's CA bundle");
        let mut builder = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("CA bundle parses"));
        if with_hub_certificate {
            let mut identity = std::fs::read(certs.join("hub-internal/hub-internal.key"))
                .expect("hub's internal key");
            identity.extend(
                std::fs::read(certs.join("hub-internal/hub-internal.crt"))
                    .expect("hub's internal certificate"),
            );
            builder = builder.identity(reqwest::Identity::from_pem(&identity).expect("identity"));
        }
        builder.build().expect("client builds")
    }

    /// The `CONFIGPROXY_AUTH_TOKEN` the hub gave its proxy.
    pub fn proxy_auth_token(&self) -> &str {
        &self.proxy_auth_token
    }

    /// The pid of the proxy process JupyterHub started, read from its pid file.
    pub fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("proxy.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// The hub process.
    pub fn process(&mut self) -> &mut ProcessGuard {
        &mut self.process
    }

    /// The tail of JupyterHub's log (its proxy and single-user servers log there too).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// configurable-http-proxy as the project's scripts install it.
pub fn chp_path() -> PathBuf {
    let chp = workspace_root().join(".cache/node/node_modules/.bin/configurable-http-proxy");
    assert!(
        chp.is_file(),
        "{} is missing: run `npm install --prefix {} configurable-http-proxy@5.3.0` \
         (the project's test script `.ci/run` does this)",
        chp.display(),
        workspace_root().join(".cache/node").display()
    );
    chp
}

fn path_with(first: PathBuf) -> std::ffi::OsString {
    let mut paths = vec![first];
    if let Some(existing) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).expect("PATH entries have no ':'")
}

/// 128 bits from the kernel's CSPRNG, hex-encoded; good enough for per-test secrets.
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
