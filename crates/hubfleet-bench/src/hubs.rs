//! The hubs under test: a `hubfleet serve` process (SQLite or PostgreSQL) and a stock
//! JupyterHub with configurable-http-proxy, each in its own directory, with an admin service
//! token, memory readings of hub + proxy, and clean-up of everything they started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;

use crate::tools::{Process, free_port, proc_status_kib};

/// Where the venvs and CHP live: `<workspace>/.cache`.
pub fn cache_dir() -> PathBuf {
    crate::workspace_root().join(".cache")
}

/// The `jh-<version>` venv under `.cache/envs`.
pub fn venv(version: &str) -> PathBuf {
    cache_dir().join("envs").join(format!("jh-{version}"))
}

/// 48 random hex characters from the kernel's generator.
pub fn random_hex() -> Result<String> {
    let mut bytes = [0_u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Which database a hubfleet hub uses.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite,
    /// A fresh database is created in the cluster at this URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl Database {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// The `db:` YAML for one hub: nothing for SQLite, a fresh database for PostgreSQL (whose
    /// name is returned too, to drop it afterwards).
    fn yaml(&self) -> Result<(String, Option<String>)> {
        let Self::Postgres(server) = self else {
            return Ok((String::new(), None));
        };
        let name = format!("hubfleet_bench_{}", &random_hex()?[..12]);
        let status = Command::new("psql")
            .args([
                server.as_str(),
                "-q",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .status()
            .context("run psql")?;
        ensure!(status.success(), "psql could not create database {name}");
        let (base, _) = server
            .rsplit_once('/')
            .context("PostgreSQL URL without a database path")?;
        Ok((format!("db:\n  url: \"{base}/{name}\"\n"), Some(name)))
    }

    /// Drops a database made by [`Database::yaml`]; best effort, from `Drop`.
    fn drop_database(&self, name: &str) {
        if let Self::Postgres(server) = self {
            let _ = Command::new("psql")
                .args([
                    server.as_str(),
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name}"),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Settings for a hub's single-user servers.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    pub cmd: Vec<String>,
    pub args: Vec<String>,
}

impl ServerCommand {
    /// The stock `jupyterhub-singleuser` of `version`'s venv.
    pub fn singleuser(version: &str) -> Self {
        Self {
            cmd: vec![
                venv(version)
                    .join("bin/jupyterhub-singleuser")
                    .display()
                    .to_string(),
            ],
            args: vec!["--allow-root".into()],
        }
    }

    /// A stdlib HTTP server that answers every GET with 200 on `$JUPYTERHUB_SERVICE_URL`
    /// (the stand-in of `crates/hubfleet/tests/it/scale.rs`), written into `dir`.
    pub fn standin(dir: &Path) -> Result<Self> {
        let script = dir.join("standin-server.py");
        std::fs::write(
            &script,
            r#"import http.server, os, urllib.parse
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"stand-in")
    def log_message(self, *args):
        pass
http.server.HTTPServer((url.hostname, url.port), Handler).serve_forever()
"#,
        )?;
        Ok(Self {
            cmd: vec!["/usr/bin/python3".into(), script.display().to_string()],
            args: Vec::new(),
        })
    }
}

/// What the benchmarks need from either hub.
pub trait Hub {
    /// The public (proxy) URL without a trailing slash.
    fn public_url(&self) -> &str;
    /// The admin service token.
    fn token(&self) -> &str;
    /// VmRSS of the hub process plus its proxy process, in KiB (user servers excluded).
    fn hub_and_proxy_rss_kib(&self) -> Result<u64>;
    /// A label for tables.
    fn label(&self) -> String;
}

/// Polls `check` every `interval` until it returns `Some`, or fails after `timeout`.
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// A client for the REST API with the admin token, generous pools and timeouts.
pub fn api_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// `GET <public>/hub/api/` until it answers 200; returns when it did.
pub async fn wait_for_api(
    public_url: &str,
    timeout: Duration,
    process: &mut Process,
) -> Result<Instant> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{public_url}/hub/api/");
    poll(
        "the hub API through the proxy",
        timeout,
        Duration::from_millis(2),
        || {
            let request = client.get(&url).send();
            let exited = process.ensure_running();
            async move {
                exited?;
                Ok(match request.await {
                    Ok(response) if response.status() == StatusCode::OK => Some(Instant::now()),
                    _ => None,
                })
            }
        },
    )
    .await
}

/// A `hubfleet serve` process with its own data directory.
pub struct HubfleetHub {
    pub process: Option<Process>,
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    config_path: PathBuf,
    public_url: String,
    token: String,
    database: Database,
    /// The PostgreSQL database created for this hub, dropped with it.
    database_name: Option<String>,
    launches: u32,
}

impl HubfleetHub {
    /// Writes a config and starts the hub; returns once `/hub/api/` answers through the proxy.
    pub async fn start(
        bin: &Path,
        database: &Database,
        server: &ServerCommand,
        spawner_yaml: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hubfleet-bench-hub-")
            .tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let data_dir = dir.path().join("data");
        let (public, hub, api) = (free_port()?, free_port()?, free_port()?);
        let token = random_hex()?;
        let (db_yaml, database_name) = database.yaml()?;
        let config = format!(
            r#"listen: 127.0.0.1:{public}
data_dir: {data}
hub:
  listen: 127.0.0.1:{hub}
proxy:
  api_listen: 127.0.0.1:{api}
auth:
  kind: dummy
spawner:
  cmd: {cmd}
  args: {args}
  run_as: hub-user
  start_timeout: 180s
  http_timeout: 180s
{spawner_yaml}cull:
  enabled: false
services:
  - name: bench
    api_token: "{token}"
    admin: true
{db}"#,
            data = data_dir.display(),
            cmd = serde_json::to_string(&server.cmd)?,
            args = serde_json::to_string(&server.args)?,
            db = db_yaml,
        );
        let config_path = dir.path().join("hubfleet.yaml");
        std::fs::write(&config_path, config)?;
        let mut hub = Self {
            process: None,
            bin: bin.to_path_buf(),
            dir,
            data_dir,
            config_path,
            public_url: format!("http://127.0.0.1:{public}"),
            token,
            database: database.clone(),
            database_name,
            launches: 0,
        };
        hub.launch(Duration::from_secs(120)).await?;
        Ok(hub)
    }

    /// Execs `hubfleet serve`; returns the instant just before the exec and the instant the API
    /// first answered 200 through the proxy.
    pub async fn launch(&mut self, timeout: Duration) -> Result<(Instant, Instant)> {
        self.launches += 1;
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn");
        let started = Instant::now();
        let mut process = Process::spawn(
            &format!("hubfleet-serve-{}", self.launches),
            command,
            self.dir.path(),
        )?;
        let ready = wait_for_api(&self.public_url, timeout, &mut process).await?;
        self.process = Some(process);
        Ok((started, ready))
    }

    /// SIGKILLs the hub process only: the proxy and the user servers keep running.
    pub fn kill_hub(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill_leader()?;
        }
        Ok(())
    }

    fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("proxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Hub for HubfleetHub {
    fn public_url(&self) -> &str {
        &self.public_url
    }
    fn token(&self) -> &str {
        &self.token
    }
    fn hub_and_proxy_rss_kib(&self) -> Result<u64> {
        let hub = self.process.as_ref().context("hub not running")?.pid();
        let proxy = self.proxy_pid().context("no proxy pid file")?;
        Ok(proc_status_kib(hub, "VmRSS:") + proc_status_kib(proxy, "VmRSS:"))
    }
    fn label(&self) -> String {
        format!("hubfleet ({})", self.database.label())
    }
}

impl Drop for HubfleetHub {
    fn drop(&mut self) {
        self.process.take();
        kill_processes_under(self.dir.path());
        if let Some(name) = &self.database_name {
            self.database.drop_database(name);
        }
    }
}

/// Stock JupyterHub from the `jh-<version>` venv, with configurable-http-proxy 5.3.0 from
/// `.cache/node`, DummyAuthenticator and SimpleLocalProcessSpawner (environment.md §2).
pub struct StockHub {
    pub process: Option<Process>,
    pub dir: tempfile::TempDir,
    version: String,
    config_path: PathBuf,
    public_url: String,
    token: String,
    launches: u32,
}

/// Clones users into a stopped JupyterHub's database ([`StockHub::add_users_offline`]).
const CLONE_USERS_PY: &str = include_str!("clone_users.py");

/// The DummyAuthenticator password of the stock hub.
pub const STOCK_PASSWORD: &str = "bench-password";

impl StockHub {
    pub async fn start(version: &str, server: &ServerCommand, extra_config: &str) -> Result<Self> {
        let chp = cache_dir().join("node/node_modules/.bin/configurable-http-proxy");
        ensure!(chp.is_file(), "no CHP at {}", chp.display());
        let dir = tempfile::Builder::new()
            .prefix(&format!("hubfleet-bench-jh-{version}-"))
            .tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let homes = dir.path().join("homes");
        std::fs::create_dir_all(&homes)?;
        let (public, hub, api) = (free_port()?, free_port()?, free_port()?);
        let token = random_hex()?;
        let py = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let py_list = |values: &[String]| serde_json::to_string(values).unwrap_or_default();
        let config = format!(
            r#"c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub}
c.JupyterHub.db_url = {db}
c.JupyterHub.cookie_secret_file = {secret}
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = {password}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = {homes}
c.Spawner.ip = '127.0.0.1'
c.Spawner.cmd = {cmd}
c.Spawner.args = {args}
c.Spawner.default_url = '/lab'
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.concurrent_spawn_limit = 1000
c.ConfigurableHTTPProxy.command = [{chp}]
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api}'
c.ConfigurableHTTPProxy.auth_token = {proxy_token}
c.ConfigurableHTTPProxy.pid_file = {pid}
c.JupyterHub.services = [{{'name': 'bench', 'api_token': {token}}}]
c.JupyterHub.load_roles = [{{
    'name': 'bench-role',
    'scopes': ['admin:users', 'admin:servers', 'list:users', 'read:users', 'read:hub'],
    'services': ['bench'],
}}]
{extra_config}
"#,
            db = py(&format!(
                "sqlite:///{}",
                dir.path().join("jupyterhub.sqlite").display()
            )),
            secret = py(&dir.path().join("cookie_secret").display().to_string()),
            password = py(STOCK_PASSWORD),
            homes = py(&format!("{}/{{username}}", homes.display())),
            cmd = py_list(&server.cmd),
            args = py_list(&server.args),
            chp = py(&chp.display().to_string()),
            proxy_token = py(&random_hex()?),
            pid = py(&dir.path().join("proxy.pid").display().to_string()),
            token = py(&token),
        );
        let config_path = dir.path().join("jupyterhub_config.py");
        std::fs::write(&config_path, config)?;
        let mut hub = Self {
            process: None,
            dir,
            version: version.to_owned(),
            config_path,
            public_url: format!("http://127.0.0.1:{public}"),
            token,
            launches: 0,
        };
        hub.launch(Duration::from_secs(180)).await?;
        Ok(hub)
    }

    /// Execs `jupyterhub`; returns the instant before the exec and when `/hub/api/` first
    /// answered 200 through the proxy.
    pub async fn launch(&mut self, timeout: Duration) -> Result<(Instant, Instant)> {
        self.launches += 1;
        let bin_dir = venv(&self.version).join("bin");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(bin_dir.join("jupyterhub"));
        command
            .arg("-f")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("PATH", path);
        let started = Instant::now();
        let mut process = Process::spawn(
            &format!("jupyterhub-{}", self.launches),
            command,
            self.dir.path(),
        )?;
        let ready = wait_for_api(&self.public_url, timeout, &mut process).await?;
        self.process = Some(process);
        Ok((started, ready))
    }

    /// SIGKILLs the hub process only: CHP and the user servers keep running.
    pub fn kill_hub(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill_leader()?;
        }
        Ok(())
    }

    /// Adds `names` straight to the hub's SQLite database while the hub is stopped, cloning the
    /// rows JupyterHub's own API wrote for `template` (a user it created), then starts the hub
    /// again; returns the number of users in the database. JupyterHub's API creates ~50 users/s
    /// here, so this is how it holds as many users as hubfleet in a benchmark run.
    pub async fn add_users_offline(&mut self, template: &str, names: &[String]) -> Result<usize> {
        self.kill_hub()?;
        let script = self.dir.path().join("clone_users.py");
        std::fs::write(&script, CLONE_USERS_PY)?;
        let mut child = Command::new(venv(&self.version).join("bin/python"))
            .arg(&script)
            .arg(self.dir.path().join("jupyterhub.sqlite"))
            .arg(template)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("run clone_users.py")?;
        {
            let mut stdin = child.stdin.take().context("no stdin")?;
            std::io::Write::write_all(&mut stdin, names.join("\n").as_bytes())?;
        }
        let output = child.wait_with_output()?;
        ensure!(
            output.status.success(),
            "clone_users.py: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let total = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("clone_users.py printed no user count")?;
        self.launch(Duration::from_secs(600)).await?;
        Ok(total)
    }

    fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("proxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Hub for StockHub {
    fn public_url(&self) -> &str {
        &self.public_url
    }
    fn token(&self) -> &str {
        &self.token
    }
    fn hub_and_proxy_rss_kib(&self) -> Result<u64> {
        let hub = self.process.as_ref().context("hub not running")?.pid();
        let proxy = self.proxy_pid().context("no CHP pid file")?;
        Ok(proc_status_kib(hub, "VmRSS:") + proc_status_kib(proxy, "VmRSS:"))
    }
    fn label(&self) -> String {
        format!("JupyterHub {} + CHP 5.3.0", self.version)
    }
}

impl Drop for StockHub {
    fn drop(&mut self) {
        self.process.take();
        kill_processes_under(self.dir.path());
    }
}

/// SIGKILLs every process whose working directory is under `dir` or whose command line mentions
/// it (proxies get pid files there; servers run in homes there), and waits up to 10 s for them.
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let own = std::process::id();
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == own {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cwd.starts_with(dir) || String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.push(pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while killed.iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// `POST /hub/api/users {"usernames": names}`; fails unless 201.
pub async fn bulk_create(client: &reqwest::Client, hub: &dyn Hub, names: &[String]) -> Result<()> {
    let response = client
        .post(format!("{}/hub/api/users", hub.public_url()))
        .header("Authorization", format!("token {}", hub.token()))
        .json(&serde_json::json!({ "usernames": names }))
        .send()
        .await?;
    let status = response.status();
    if status != StatusCode::CREATED {
        bail!(
            "bulk create of {} users: {status}: {}",
            names.len(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// `GET <public>/hub/api<path>` with the admin token.
pub async fn api_get(
    client: &reqwest::Client,
    hub: &dyn Hub,
    path: &str,
) -> Result<reqwest::Response> {
    Ok(client
        .get(format!("{}/hub/api{path}", hub.public_url()))
        .header("Authorization", format!("token {}", hub.token()))
        .send()
        .await?)
}
